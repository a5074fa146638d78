"""Fixtures for the Envoy integration tests.

``Stack`` = test PKI + one HTTPS ``BundleServer`` per trust domain + the example
authorization server (``TokenEndpoint``) + Envoy running the filter. Each test module
builds one stack (module scope) so Envoy starts once per module.

The wasm is ``target/wasm32-wasip1/release/spiffe_oauth_filter.wasm`` unless
``SPIFFE_FILTER_WASM`` names another file; ``ENVOY_CONCURRENCY`` overrides the worker
count (default 1). When a test fails, the filter's log lines written during that test
are printed in the report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness import client, pki, svid  # noqa: E402
from harness.envoy import DEFAULT_WASM, Envoy  # noqa: E402
from harness.servers import BundleServer, TokenEndpoint, free_port  # noqa: E402

ISSUER = "https://as.example.com"
AS_HOST = "as.example.com"  # the name on the TLS listener's certificate
TOKEN_PATH = "/token"
ASSERTION_TYPE = client.JWT_SPIFFE

INVALID_CLIENT = {"error": "invalid_client", "error_description": "client authentication failed"}
INVALID_REQUEST = {"error": "invalid_request", "error_description": "malformed token request"}


def wasm_path() -> Path:
    path = Path(os.environ.get("SPIFFE_FILTER_WASM", DEFAULT_WASM))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build the filter first (./build.sh build)", pytrace=False)
    return path


def cluster_name(trust_domain: str) -> str:
    return "bundle_" + trust_domain.replace(".", "_").replace("-", "_")


def plugin_config(trust_domains: list[str], clients: list[dict], **overrides) -> dict:
    """A plugin configuration (README "Configuration") with one bundle endpoint per trust domain."""
    config = {
        "issuer": ISSUER,
        "token_paths": [TOKEN_PATH],
        "trust_domains": {
            td: {"bundle_endpoint": {"cluster": cluster_name(td), "authority": f"bundle.{td}",
                                     "path": "/bundle.json", "timeout_ms": 2000}}
            for td in trust_domains
        },
        "clients": clients,
        "identity_headers": {"spiffe_id": "x-spiffe-id", "client_id": "x-oauth-client-id"},
        "clock_skew_seconds": 60,
    }
    config.update(overrides)
    return config


@dataclass
class Stack:
    """Everything one test module talks to."""

    workdir: Path
    tls_files: pki.TlsFiles
    bundles: dict[str, BundleServer]
    auth: TokenEndpoint
    envoy: Envoy
    config: dict
    keys: dict[str, pki.SigningKey] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.envoy.listener_port

    def tls(self, svid_files: tuple[Path, Path] | None = None) -> client.Tls:
        """TLS to the mTLS listener, presenting ``svid_files`` (certificate, key) if given."""
        cert, key = svid_files or (None, None)
        return client.mtls(self.tls_files.ca_cert, AS_HOST, cert, key)

    def post_mtls(self, params, svid_files=None, headers=None) -> client.Response:
        return client.post_form(self.envoy.mtls_port, TOKEN_PATH, params, headers,
                                tls=self.tls(svid_files))

    def post(self, params, headers=None, content_type: str = client.FORM,
             path: str = TOKEN_PATH) -> client.Response:
        return client.post_form(self.port, path, params, headers, content_type)

    def post_assertion(self, assertion: str, headers=None, **extra) -> client.Response:
        return self.post(client.assertion_params(assertion, **extra), headers)

    def filter_stats(self) -> dict[str, int]:
        """The filter's own metrics in Envoy's /stats (README "Metrics and logs")."""
        stats = self.envoy.stats(r"^wasmcustom\.spiffe_oauth_filter\.")
        return {k: int(v) for k, v in stats.items()}

    def settled_filter_stats(self) -> dict[str, int]:
        """The filter's metrics once earlier requests have been handed over (each VM does so
        on its 100 ms timer): two equal reads 0.35 s apart, bundle ages aside."""
        def read():
            return {k: v for k, v in self.filter_stats().items()
                    if not k.endswith(".age_seconds")}
        last = read()
        while True:
            time.sleep(0.35)
            now = read()
            if now == last:
                return self.filter_stats()
            last = now

    def wait_for_bundle_hits(self, trust_domain: str, more: int, timeout: float = 10.0):
        """Wait until the trust domain's bundle endpoint has seen ``more`` further requests."""
        server = self.bundles[trust_domain]
        target = server.hits + more
        deadline = time.monotonic() + timeout
        while server.hits < target and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.hits >= target, "the filter stopped polling the bundle endpoint"

    def wait_until_accepted(self, assertion: str, timeout: float = 15.0) -> bool:
        """Poll until a valid assertion gets 200 (i.e. the bundle has been loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.post_assertion(assertion).status == 200:
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        self.envoy.stop()
        self.auth.stop()
        for server in self.bundles.values():
            server.stop()


def start_stack(workdir: Path, bundle_keys: dict[str, list[pki.SigningKey]], clients: list[dict],
                down: tuple[str, ...] = (), x509_authorities: dict[str, list] | None = None,
                concurrency: int | None = None, dynamic_listeners: bool = False,
                replace: dict | None = None, upstream_port: int | None = None,
                drain_time_s: int | None = None, **config_overrides) -> Stack:
    """Start bundle servers (except those in ``down``), the AS and Envoy with the filter.
    ``x509_authorities`` adds ``x509-svid`` entries (harness.svid CAs) to the bundles;
    ``dynamic_listeners`` serves the listeners by LDS (``stack.envoy.update_plugin_config``);
    ``replace`` replaces top-level members of the plugin configuration last (e.g. a
    ``trust_domains`` naming a cluster Envoy does not have); ``upstream_port`` sends what Envoy
    forwards to another AS than the example one (which still runs, unused)."""
    trust_domains = list(bundle_keys)
    tls = pki.write_tls_pki(workdir / "pki", [AS_HOST] + [f"bundle.{td}" for td in trust_domains])
    x509_authorities = x509_authorities or {}
    bundles = {td: BundleServer(tls, pki.bundle_bytes(
                   keys, sequence=1, refresh_hint=300,
                   extra_entries=[svid.bundle_entry(ca) for ca in x509_authorities.get(td, [])]),
                   port=free_port())
               for td, keys in bundle_keys.items()}
    for td, server in bundles.items():
        if td not in down:
            server.start()
    auth = TokenEndpoint(token_path=TOKEN_PATH).start()
    config = plugin_config(trust_domains, clients, **config_overrides)
    config.update(replace or {})
    envoy = Envoy(workdir, config, wasm_path=wasm_path(), ca_file=tls.ca_cert,
                  as_port=upstream_port or auth.port,
                  bundle_ports={td: s.port for td, s in bundles.items()},
                  concurrency=concurrency or int(os.environ.get("ENVOY_CONCURRENCY", "1")),
                  dynamic_listeners=dynamic_listeners, drain_time_s=drain_time_s)
    stack = Stack(workdir, tls, bundles, auth, envoy, config)
    try:
        envoy.start()
    except Exception:
        stack.stop()
        raise
    return stack


# ------------------------------------------------------------- assertion helpers


def assert_error(resp: client.Response, status: int, body: dict, www_authenticate: str | None = None):
    """A filter-generated OAuth error, exactly as the README's "Error responses" table says."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("content-type") == "application/json"
    assert resp.json() == body
    assert resp.header_values("cache-control") == ["no-store"]
    assert resp.header_values("pragma") == ["no-cache"]
    assert resp.header_values("www-authenticate") == ([www_authenticate] if www_authenticate else [])


def assert_invalid_client(resp: client.Response, www_authenticate: str | None = None):
    assert_error(resp, 401, INVALID_CLIENT, www_authenticate)


def assert_invalid_request(resp: client.Response):
    assert_error(resp, 400, INVALID_REQUEST)


def assert_nothing_forwarded(stack: Stack):
    time.sleep(0.05)  # a wrongly forwarded request would be recorded by now
    assert stack.auth.requests == []


# ------------------------------------------------------------------ pytest hooks


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def filter_log_on_failure(request):
    """Per test: forget the AS's recorded requests; on failure print the Envoy log lines
    (wasm/error) written during the test. Every test module defines a ``stack`` fixture."""
    stack: Stack = request.getfixturevalue("stack")
    stack.auth.clear()
    offset = stack.envoy.log_size()
    yield stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        lines = stack.envoy.log_since(offset).splitlines()
        relevant = [l for l in lines if "wasm" in l or "critical" in l or "error" in l]
        print(f"--- Envoy log during this test ({stack.envoy.log_path}) ---")
        print("\n".join(relevant[-60:]) or "(no wasm/error lines)")
        print("--- requests the authorization server received ---")
        for r in stack.auth.requests:
            print(r)
