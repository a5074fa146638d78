"""End-to-end demo (``./build.sh run``): ``python -m harness.demo [--keep] [--wasm PATH]``.

Starts, on 127.0.0.1: a SPIFFE trust domain ``example.org`` (fresh JWT signing key, its
bundle served over HTTPS), an example authorization server, and Envoy with the filter.
Then it sends a JWT-SVID ``client_credentials`` request, a forged assertion and an expired
one through Envoy, prints what happened, and exits 0 only if all three outcomes are the
expected ones. ``--keep`` leaves everything running (Ctrl-C stops it) and prints curl examples.
``--as oidc-provider`` runs the X509-SVID steps against oidc-provider instead (``demo_oidc``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl

from . import client, pki, svid
from .envoy import DEFAULT_WASM, REPO, Envoy
from .servers import BundleServer, TokenEndpoint

TRUST_DOMAIN = "example.org"
CLIENT_SPIFFE_ID = "spiffe://example.org/demo-client"
AS_HOST = "as.example.com"  # name on the TLS listener's certificate
PLUGIN_CONFIG = REPO / "envoy" / "plugin-config.demo.json"


def _short(value: str, keep: int = 24) -> str:
    return value if len(value) <= 2 * keep + 3 else f"{value[:keep]}...{value[-keep // 2:]}"


def _show_request(path: str, params: list[tuple[str, str]]):
    print(f"  POST {path}  content-type: {client.FORM}")
    for name, value in params:
        print(f"    {name}={_short(value) if name == 'client_assertion' else value}")


def _show_response(resp: client.Response):
    print(f"  <- HTTP {resp.status}")
    for name in ("content-type", "cache-control", "pragma", "www-authenticate"):
        if resp.header(name):
            print(f"     {name}: {resp.header(name)}")
    print(f"     {resp.body.decode(errors='replace')}")


class Demo:
    def __init__(self, workdir: Path, wasm: Path):
        self.config = json.loads(PLUGIN_CONFIG.read_text())
        # Read leniently: a configuration the filter refuses must reach Envoy, so that the
        # filter's own message (with the field path) is what the user sees.
        self.issuer = str(self.config.get("issuer", ""))
        self.token_path = str((self.config.get("token_paths") or ["/token"])[0])
        trust_domains = self.config.get("trust_domains")
        endpoint = (trust_domains.get(TRUST_DOMAIN, {}) if isinstance(trust_domains, dict)
                    else {}).get("bundle_endpoint", {})
        bundle_path = str(endpoint.get("path", "/bundle.json"))
        authority = str(endpoint.get("authority", f"bundle.{TRUST_DOMAIN}"))
        self.bundle_url = f"https://{authority}{bundle_path}"
        self.tls = pki.write_tls_pki(workdir / "pki", [AS_HOST, authority])
        self.key = pki.ec_key("demo-key-1")
        # The trust domain's X.509 authority, and an intermediate that issues the demo's SVID.
        self.x509_ca = svid.authority(TRUST_DOMAIN)
        self.x509_mid = svid.intermediate(self.x509_ca, TRUST_DOMAIN)
        self.workdir = workdir
        bundle = pki.bundle_bytes([self.key], extra_entries=[svid.bundle_entry(self.x509_ca)])
        self.bundle = BundleServer(self.tls, bundle, path=bundle_path)
        self.auth_server = TokenEndpoint(token_path=self.token_path)
        self.bundle.start()
        self.auth_server.start()
        self.envoy = Envoy(workdir, self.config, wasm_path=wasm, ca_file=self.tls.ca_cert,
                           as_port=self.auth_server.port,
                           bundle_ports={TRUST_DOMAIN: self.bundle.port})
        self.failures: list[str] = []

    def stop(self):
        self.envoy.stop()
        self.auth_server.stop()
        self.bundle.stop()

    def check(self, ok: bool, what: str):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)

    def send(self, assertion: str) -> tuple[list[tuple[str, str]], client.Response]:
        params = client.assertion_params(assertion)
        return params, client.post_form(self.envoy.listener_port, self.token_path, params)

    def wait_for_bundle(self, timeout: float = 10.0) -> bool:
        """Poll with a valid assertion until the filter accepts it (bundle fetched)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.bundle.hits and self.send(self.valid_assertion())[1].status == 200:
                self.auth_server.clear()
                return True
            time.sleep(0.2)
        return False

    def valid_assertion(self, lifetime: int = 300) -> str:
        return pki.mint_svid(self.key, CLIENT_SPIFFE_ID, self.issuer, lifetime=lifetime)

    def run(self) -> bool:
        print(f"trust domain {TRUST_DOMAIN}: bundle {self.bundle_url} "
              f"(127.0.0.1:{self.bundle.port}), JWT key kid={self.key.kid}")
        print(f"authorization server: http://127.0.0.1:{self.auth_server.port}{self.token_path}")
        print(f"work dir: {self.workdir}")
        print(f"envoy: http://127.0.0.1:{self.envoy.listener_port}, "
              f"https://{AS_HOST}:{self.envoy.mtls_port} on 127.0.0.1 (TLS, optional client "
              f"certificates), admin {self.envoy.admin_port}, log {self.envoy.log_path}"
              " (its directory is removed when the demo ends, kept if it fails)")
        self.envoy.start()
        if not self.wait_for_bundle():
            self.check(False, "filter loaded the trust bundle within 10 s")
            return False
        print(f"filter has the bundle of {TRUST_DOMAIN} (bundle endpoint hits: {self.bundle.hits}; "
              "one VM fetches for all workers)\n")

        print(f"1. valid JWT-SVID for {CLIENT_SPIFFE_ID} (aud={self.issuer}, exp=now+300)")
        params, resp = self.send(self.valid_assertion())
        _show_request(self.token_path, params)
        _show_response(resp)
        seen = self.auth_server.requests
        if seen:
            print("  the authorization server received:")
            for name in ("x-spiffe-id", "x-oauth-client-id"):
                print(f"     {name}: {seen[-1].header_values(name)}")
            body_ok = parse_qsl(seen[-1].body.decode()) == params
            print(f"     body unchanged: {body_ok}")
        body = resp.json() if resp.header("content-type") == "application/json" else {}
        self.check(resp.status == 200 and "access_token" in body, "token issued (HTTP 200)")
        self.check(body.get("client_id") == "demo-client", "token issued to client_id demo-client")
        self.check(len(seen) == 1 and seen[0].header_values("x-spiffe-id") == [CLIENT_SPIFFE_ID],
                   f"authorization server saw x-spiffe-id: {CLIENT_SPIFFE_ID}")

        forged_key = pki.ec_key(self.key.kid)  # same kid, key not in the bundle
        now = int(time.time())
        cases = [
            ("2. forged JWT-SVID (same kid, signed by a key that is not in the bundle)",
             pki.mint_svid(forged_key, CLIENT_SPIFFE_ID, self.issuer)),
            ("3. expired JWT-SVID (exp = now-600, clock skew 60 s)",
             pki.mint_svid(self.key, CLIENT_SPIFFE_ID, self.issuer, lifetime=-600, now=now)),
        ]
        for title, assertion in cases:
            print(f"\n{title}")
            self.auth_server.clear()
            params, resp = self.send(assertion)
            _show_request(self.token_path, params)
            _show_response(resp)
            error = resp.json().get("error") if resp.header("content-type") == "application/json" else None
            self.check(resp.status == 401 and error == "invalid_client", "rejected: 401 invalid_client")
            self.check(not self.auth_server.requests, "nothing reached the authorization server")
        self.run_x509()
        return not self.failures

    def run_x509(self):
        """X509-SVID over mTLS: the demo client's certificate, then one of a foreign trust domain."""
        params = [("grant_type", "client_credentials"), ("client_id", "demo-client")]
        foreign_ca = svid.authority("example.net")
        cases = [
            (f"4. mTLS with the X509-SVID of {CLIENT_SPIFFE_ID} (leaf under an intermediate)",
             svid.leaf(self.x509_mid, [CLIENT_SPIFFE_ID]), [self.x509_mid], "x509-demo-client"),
            (f"5. mTLS with an X509-SVID claiming {CLIENT_SPIFFE_ID}, issued by example.net's CA",
             svid.leaf(foreign_ca, [CLIENT_SPIFFE_ID]), [], "x509-foreign-client"),
        ]
        for title, leaf, chain, name in cases:
            accepted = name == "x509-demo-client"
            print(f"\n{title}")
            self.auth_server.clear()
            files = svid.client_files(self.workdir, leaf, chain, name=name)
            tls = client.mtls(self.tls.ca_cert, AS_HOST, *files)
            print(f"  (TLS to {AS_HOST}; client certificate: the leaf and {len(chain)} intermediate(s))")
            _show_request(self.token_path, params)
            resp = client.post_form(self.envoy.mtls_port, self.token_path, params, tls=tls)
            _show_response(resp)
            seen = self.auth_server.requests
            if accepted:
                if seen:
                    print("  the authorization server received:")
                    for name in ("x-spiffe-id", "x-oauth-client-id"):
                        print(f"     {name}: {seen[-1].header_values(name)}")
                self.check(resp.status == 200, "token issued (HTTP 200)")
                self.check(len(seen) == 1 and seen[0].header_values("x-spiffe-id") == [CLIENT_SPIFFE_ID],
                           f"authorization server saw x-spiffe-id: {CLIENT_SPIFFE_ID}")
            else:
                error = resp.json().get("error") if resp.header("content-type") == "application/json" else None
                self.check(resp.status == 401 and error == "invalid_client", "rejected: 401 invalid_client")
                self.check(not seen, "nothing reached the authorization server")

    def keep_running(self, workdir: Path):
        token_file = workdir / "demo-client.jwt"
        port = self.envoy.listener_port
        mtls_port = self.envoy.mtls_port
        cert, key = svid.client_files(workdir, svid.leaf(self.x509_mid, [CLIENT_SPIFFE_ID]),
                                      [self.x509_mid], name="demo-client")
        print(f"""
Everything keeps running; Ctrl-C stops it. {token_file} holds a fresh JWT-SVID
for {CLIENT_SPIFFE_ID} (rewritten every 60 s).

  curl -si http://127.0.0.1:{port}{self.token_path} \\
    -d grant_type=client_credentials \\
    -d client_assertion_type={client.JWT_SPIFFE} \\
    -d client_assertion=$(cat {token_file})

  # without an assertion the filter passes the request through; the example AS then
  # refuses it with its own 401 (it only issues tokens to clients the filter vouched for):
  curl -si http://127.0.0.1:{port}{self.token_path} -d grant_type=client_credentials -d client_id=x

  # X509-SVID over mTLS ({cert} holds the leaf and its intermediate):
  curl -si --cacert {self.tls.ca_cert} --resolve {AS_HOST}:{mtls_port}:127.0.0.1 \\
    --cert {cert} --key {key} https://{AS_HOST}:{mtls_port}{self.token_path} \\
    -d grant_type=client_credentials -d client_id=demo-client

  # the same with a certificate another trust domain's CA issued for that ID: refused
  curl -si --cacert {self.tls.ca_cert} --resolve {AS_HOST}:{mtls_port}:127.0.0.1 \\
    --cert {workdir / "x509-foreign-client.crt"} --key {workdir / "x509-foreign-client.key"} \\
    https://{AS_HOST}:{mtls_port}{self.token_path} -d grant_type=client_credentials -d client_id=demo-client

  curl -s http://127.0.0.1:{self.envoy.admin_port}/stats | grep -E 'wasm|bundle_example_org.upstream_rq'
  tail -f {self.envoy.log_path}
""")
        try:
            while True:
                token_file.write_text(self.valid_assertion() + "\n")
                time.sleep(60)
        except KeyboardInterrupt:
            print("stopping")


def refused_configuration(envoy_log: Path) -> list[str]:
    """The filter's configuration errors in an Envoy log, without Envoy's line prefixes."""
    try:
        lines = envoy_log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    marker = "the configuration is refused"
    return [line[line.find("configuration"):] for line in lines
            if marker in line and "configuration" in line[:line.find(marker)]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./build.sh run", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave everything running (Ctrl-C stops)")
    parser.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help="filter module")
    parser.add_argument("--as", dest="upstream", choices=("example", "oidc-provider"),
                        default="example",
                        help="the authorization server behind Envoy: the example one, or "
                             "oidc-provider (X509-SVID with a certificate-bound token)")
    args = parser.parse_args(argv)
    if not args.wasm.is_file():
        print(f"{args.wasm} not found; build it first (./build.sh build)", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="spiffe-oauth-demo-"))
    demo = None
    ok = False
    try:
        if args.upstream == "oidc-provider":
            from .demo_oidc import OidcDemo

            demo = OidcDemo(workdir, args.wasm)
        else:
            demo = Demo(workdir, args.wasm)
        ok = demo.run()
        if args.keep:
            demo.keep_running(workdir)
    except Exception as exc:  # report, clean up, and fail
        refused = refused_configuration(workdir / "envoy.log")
        if refused:
            print("the filter refused its configuration (envoy/plugin-config.demo.json):\n  "
                  + "\n  ".join(refused), file=sys.stderr)
        else:
            print(f"demo error: {exc}", file=sys.stderr)
    finally:
        if demo is not None:
            demo.stop()
    if ok:
        print("\ndemo OK")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    failed = ", ".join(demo.failures) if demo and demo.failures else "could not start"
    print(f"\ndemo FAILED ({failed}); logs kept in {workdir}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
