"""AS metadata passing through the filter (META-1, draft-02 §4): with `as_metadata.paths`
configured, a GET of an RFC 8414 / OpenID discovery document comes back with the SPIFFE methods
the filter enforces added to `token_endpoint_auth_methods_supported`, and nothing else changed;
anything that is not such a document passes unchanged. (Off by default:
test_jwt_svid_envoy.py::test_metadata_not_served_or_rewritten.)"""

from __future__ import annotations

import json

import pytest
from conftest import ISSUER, start_stack

from harness import client, pki

ORG = "example.org"
RFC8414 = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"
METADATA = {
    "issuer": ISSUER,
    "token_endpoint": f"{ISSUER}/token",
    "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
    "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
    "grant_types_supported": ["client_credentials"],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-as-metadata"), {ORG: [pki.ec_key("k")]},
                    [{"spiffe_id": "spiffe://example.org/w"}],
                    as_metadata={"paths": [RFC8414, OIDC],
                                 "auth_methods": ["spiffe_jwt", "spiffe_x509"],
                                 "max_bytes": 4096})
    try:
        yield s
    finally:
        s.stop()


def get(stack, path, headers=None) -> client.Response:
    return client.request(stack.port, "GET", path, headers=headers)


@pytest.mark.parametrize("path", [RFC8414, OIDC])
def test_meta_1_methods_added(stack, path):
    stack.auth.documents = {path: json.dumps(METADATA).encode()}
    resp = get(stack, path + "?x=1", headers=[("accept-encoding", "gzip")])
    assert resp.status == 200 and resp.header("content-type") == "application/json"
    want = dict(METADATA, token_endpoint_auth_methods_supported=[
        "client_secret_basic", "private_key_jwt", "spiffe_jwt", "spiffe_x509"])
    assert resp.json() == want
    assert resp.header_values("content-length") in ([], [str(len(resp.body))])
    # The AS was asked for an uncompressed answer, so the filter can complete it.
    [seen] = stack.auth.requests
    assert seen.header_values("accept-encoding") == []


def test_a_complete_list_passes_byte_for_byte(stack):
    body = json.dumps(dict(METADATA, token_endpoint_auth_methods_supported=[
        "spiffe_x509", "spiffe_jwt"]), indent=1).encode()
    stack.auth.documents = {RFC8414: body}
    resp = get(stack, RFC8414)
    assert (resp.status, resp.body) == (200, body)


@pytest.mark.parametrize("document", [
    (b"<html>not json</html>", "text/html"),
    (b"not json", "application/json"),
    (b'{"token_endpoint_auth_methods_supported": "spiffe_jwt"}', "application/json"),
    (json.dumps(dict(METADATA, padding="x" * 5000)).encode(), "application/json"),
])
def test_other_documents_pass_unchanged(stack, document):
    stack.auth.documents = {RFC8414: document}
    resp = get(stack, RFC8414)
    assert (resp.status, resp.body) == (200, document[0])


def test_other_paths_and_methods_untouched(stack):
    stack.auth.documents = {"/.well-known/other": json.dumps(METADATA).encode()}
    assert get(stack, "/.well-known/other").json() == METADATA
    stack.auth.documents = {RFC8414: json.dumps(METADATA).encode()}
    resp = client.request(stack.port, "POST", RFC8414, b"")
    assert (resp.status, resp.json()) == (200, {"ok": True})
