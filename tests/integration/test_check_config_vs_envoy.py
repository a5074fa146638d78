"""check-config against Envoy itself (review 7): for edge-case configurations the native
check-config binary and the filter loaded by Envoy must accept and refuse the same ones. The
first problem check-config names is the one the filter logs, except where the native and the
wasm32 builds read an integer differently (usize is 32 bits in the filter): both refuse, with
different messages. Useful coverage, expected to pass."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import plugin_config, wasm_path

from harness import pki
from harness.envoy import Envoy
from harness.servers import TokenEndpoint

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "debug" / "check-config"


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["cargo", "build", "--quiet", "--bin", "check-config"], cwd=REPO, check=True)


@pytest.fixture(autouse=True)
def filter_log_on_failure():
    """Each test starts its own Envoy; no shared stack."""
    yield


def base() -> dict:
    return plugin_config(["example.org"], [{"spiffe_id": "spiffe://example.org/w"}])


def text_with(**members) -> str:
    config = base()
    config.update(members)
    return json.dumps(config)


DEEP = "[" * 200 + "]" * 200
CASES = {
    # name: (configuration text, accepted, the first problem check-config and Envoy name)
    "null-client-id": (text_with(clients=[{"spiffe_id": "spiffe://example.org/w",
                                           "client_id": None}]), True, None),
    "float-timeout": (text_with(limits={"max_body_bytes": 65536.0}), False, "limits.max_body_bytes"),
    "deep-nesting": (text_with()[:-1] + f', "x": {DEEP}}}', False, None),
    "lone-surrogate": (text_with(issuer="https://as.example.com/\\ud800").replace("\\\\", "\\"),
                       False, None),
    "colliding-trust-domains": (json.dumps(plugin_config(
        ["example.org", "example-org"], [{"spiffe_id": "spiffe://example.org/w"}])), False,
        "trust_domains.example.org"),
    "metadata-max-bytes-ceiling": (text_with(as_metadata={"paths": ["/m"], "max_bytes": 16384}),
                                   True, None),
    "metadata-max-bytes-over": (text_with(as_metadata={"paths": ["/m"], "max_bytes": 16385}),
                                False, "as_metadata.max_bytes"),
    "held-requests-2-32": (text_with(limits={"max_held_requests": 4294967296}), False,
                           "limits.max_held_requests"),
}


def check_config(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), "-"], input=text.encode(), capture_output=True)


def envoy_verdict(tmp_path: Path, text: str) -> tuple[bool, str]:
    tls = pki.write_tls_pki(tmp_path / "pki", ["bundle.example.org"])
    with TokenEndpoint().start() as auth:
        envoy = Envoy(tmp_path, text, wasm_path=wasm_path(), ca_file=tls.ca_cert,
                      as_port=auth.port, bundle_ports={"example.org": 1})
        try:
            envoy.start(timeout=20)
        except RuntimeError:
            lines = [line for line in envoy.log_text().splitlines()
                     if "the configuration is refused" in line]
            return False, lines[0] if lines else envoy.log_tail(20)
        envoy.stop()
        return True, ""


@pytest.mark.parametrize("name", list(CASES))
def test_check_config_agrees_with_envoy(tmp_path, name):
    text, accepted, field = CASES[name]
    done = check_config(text)
    envoy_accepted, envoy_line = envoy_verdict(tmp_path, text)
    assert (done.returncode == 0) == accepted, done.stdout
    assert envoy_accepted == accepted, envoy_line
    if not accepted:
        first = done.stdout.decode().splitlines()[0].split("refused: ", 1)[1]
        if field is not None:
            assert f"configuration field {field}:" in first
            assert f"configuration field {field}:" in envoy_line
        if name != "held-requests-2-32":
            assert first in envoy_line, (first, envoy_line)
