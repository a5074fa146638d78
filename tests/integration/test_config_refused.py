"""A refused plugin configuration (FC-01 b, AUD-7): Envoy does not start serving with it, and the
log line names the offending field. No request is ever let through on a refused configuration."""

from __future__ import annotations

import pytest
from conftest import plugin_config, wasm_path

from harness import pki
from harness.envoy import Envoy
from harness.servers import TokenEndpoint


@pytest.fixture(autouse=True)
def filter_log_on_failure():
    """Each test here starts its own Envoy; there is no shared stack to report on."""
    yield


@pytest.mark.parametrize(
    "override, field, message",
    [
        ({"issuer": "http://as.example.com"}, "issuer", "must be an https URL"),
        ({"token_paths": []}, "token_paths", "must list at least one path"),
        ({"clients": [{"spiffe_id": "spiffe://example.org/a/../b"}]}, "clients[0].spiffe_id",
         "not a SPIFFE ID"),
        ({"audience": "https://as.example.com"}, "audience", "unknown field"),
    ],
    ids=["issuer-not-https", "no-token-path", "bad-client-id", "unknown-field"],
)
def test_invalid_configuration_is_refused_with_field_path(tmp_path, override, field, message):
    tls = pki.write_tls_pki(tmp_path / "pki", ["bundle.example.org"])
    config = plugin_config(["example.org"], [{"spiffe_id": "spiffe://example.org/demo-client"}])
    config.update(override)
    with TokenEndpoint().start() as auth:
        envoy = Envoy(tmp_path, config, wasm_path=wasm_path(), ca_file=tls.ca_cert,
                      as_port=auth.port, bundle_ports={"example.org": 1})
        with pytest.raises(RuntimeError, match="Envoy exited"):
            envoy.start(timeout=20)
        log = envoy.log_text()
        assert f"configuration field {field}: {message}" in log, log[-3000:]
        assert "the configuration is refused" in log
        assert auth.requests == []
