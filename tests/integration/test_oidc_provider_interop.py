"""Interop with a real authorization server: oidc-provider (a certified OpenID/OAuth server,
interop/oidc-provider) behind Envoy and the filter. The X509-SVID client is registered there with
tls_client_auth and tls_client_auth_san_uri = its SPIFFE ID (RFC 8705 §2.1.2); the filter
validates the chain against the trust domain's x509-svid authorities, forwards the certificate
as RFC 9440 Client-Cert, and the AS issues an access token bound to it (cnf.x5t#S256, RFC 8705
§3), which the test decodes and checks. X509-1, CID-4, CID-5; issue "Operating it for real"."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from conftest import ISSUER, TOKEN_PATH, assert_invalid_client, start_stack
from cryptography.hazmat.primitives.serialization import Encoding

from harness import client, pki, svid
from harness.oidc_provider import OidcProvider

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
CA = svid.authority(ORG)
TOKEN_REQUEST = [("grant_type", "client_credentials"), ("client_id", DEMO)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("envoy-oidc-provider")
    provider = OidcProvider(ISSUER, DEMO, workdir / "oidc-provider.log").start()
    try:
        s = start_stack(workdir, {ORG: [pki.ec_key("org")]}, [{"spiffe_id": DEMO}],
                        x509_authorities={ORG: [CA]}, upstream_port=provider.port,
                        client_certificate={"rfc9440_headers": True})
        s.provider = provider
    except Exception:
        provider.stop()
        raise
    try:
        leaf = svid.leaf(CA, [DEMO])
        s.leaf = leaf
        s.files = svid.client_files(workdir / "clients", leaf)
        yield s
    finally:
        s.stop()
        provider.stop()


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_certificate_bound_access_token_for_an_x509_svid(stack):
    before = grants(stack)
    resp = stack.post_mtls(TOKEN_REQUEST, stack.files)
    assert resp.status == 200, (resp.body, stack.provider.log_text()[-2000:])
    assert grants(stack) == [*before, f"grant.success {DEMO}"]
    answer = resp.json()
    assert answer["token_type"] == "Bearer"
    header, claims = (b64url_json(s) for s in answer["access_token"].split(".")[:2])
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt"
    leaf_der = stack.leaf.cert.public_bytes(Encoding.DER)
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(leaf_der).digest()).rstrip(b"=")
    assert claims["cnf"] == {"x5t#S256": thumbprint.decode()}
    assert claims["client_id"] == DEMO
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "https://api.example.com"


def grants(stack) -> list[str]:
    return [line for line in stack.provider.log_text().splitlines() if line.startswith("grant.")]


def test_a_foreign_ca_certificate_never_reaches_the_as(stack):
    """Another CA's certificate with the same SPIFFE ID: the filter refuses it (its own exact
    answer) although oidc-provider, which checks only the SAN, would have taken it."""
    before = grants(stack)
    foreign = svid.client_files(stack.workdir / "clients", svid.leaf(svid.authority(ORG), [DEMO]),
                                name="foreign")
    assert_invalid_client(stack.post_mtls(TOKEN_REQUEST, foreign))
    assert grants(stack) == before


def test_a_client_sent_client_cert_header_is_no_credential(stack):
    """Over plain HTTP, a Client-Cert header with the right certificate is removed by the
    filter: oidc-provider sees no certificate and refuses the client itself."""
    der = stack.leaf.cert.public_bytes(Encoding.DER)
    forged = [("client-cert", f":{base64.b64encode(der).decode()}:")]
    before = grants(stack)
    resp = client.post_form(stack.port, TOKEN_PATH, TOKEN_REQUEST, forged)
    assert (resp.status, resp.json()["error"]) == (401, "invalid_client")
    assert grants(stack) == [*before, "grant.error invalid_client: client certificate was not provided"]
