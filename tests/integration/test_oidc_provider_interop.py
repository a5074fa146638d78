"""Interop with a real authorization server: oidc-provider (a certified OpenID/OAuth server,
interop/oidc-provider) behind Envoy and the filter. The X509-SVID client is registered there with
tls_client_auth and tls_client_auth_san_uri = its SPIFFE ID (RFC 8705 §2.1.2); the filter
validates the chain against the trust domain's x509-svid authorities, forwards the certificate
as RFC 9440 Client-Cert, and the AS issues an access token bound to it (cnf.x5t#S256, RFC 8705
§3), which the test decodes and checks. X509-1, CID-4, CID-5; issue "Operating it for real".

Attacks (an adversarial review; all refused): no client may get an access token bound to a
certificate the filter did not validate as the request's credential. oidc-provider takes a
certificate from Client-Cert only together with x-spiffe-id, so the attacks try to get the filter
to set x-spiffe-id (a valid JWT-SVID) while a certificate of the attacker's choosing reaches the
AS: as client-sent headers in every spelling, over mTLS with a non-SPIFFE certificate, with
another CA's certificate for the same SPIFFE ID, or both."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from conftest import ISSUER, TOKEN_PATH, assert_invalid_client, start_stack
from cryptography.hazmat.primitives.serialization import Encoding

from harness import client, pki, svid
from harness.oidc_provider import OidcProvider

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
CA = svid.authority(ORG)
KEY = pki.ec_key("org-oidc")
TOKEN_REQUEST = [("grant_type", "client_credentials"), ("client_id", DEMO)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("envoy-oidc-provider")
    provider = OidcProvider(ISSUER, DEMO, workdir / "oidc-provider.log").start()
    try:
        s = start_stack(workdir, {ORG: [KEY]}, [{"spiffe_id": DEMO}],
                        x509_authorities={ORG: [CA]}, upstream_port=provider.port,
                        client_certificate={"rfc9440_headers": True})
        s.provider = provider
    except Exception:
        provider.stop()
        raise
    try:
        s.leaf = svid.leaf(CA, [DEMO])
        s.files = svid.client_files(workdir / "clients", s.leaf)
        s.foreign = svid.client_files(workdir / "clients",
                                      svid.leaf(svid.authority(ORG), [DEMO]), name="foreign")
        other_ca = svid.authority("not-spiffe.example")
        s.plain = svid.client_files(workdir / "clients",
                                    svid.leaf(other_ca, [], dns=["client.example"]), name="plain")
        assert bundle_loaded(s), s.envoy.log_tail(40)
        yield s
    finally:
        s.stop()
        provider.stop()


def bundle_loaded(stack, timeout: float = 15.0) -> bool:
    """The filter has the trust domain's bundle (its gauge; oidc-provider's own answers look
    like the filter's, so the answers cannot tell)."""
    deadline = time.monotonic() + timeout
    name = "wasmcustom.spiffe_oauth_filter.bundle.example_org.usable"
    while time.monotonic() < deadline:
        if stack.envoy.stats(name).get(name) == "1":
            return True
        time.sleep(0.2)
    return False


def grants(stack) -> list[str]:
    return [line for line in stack.provider.log_text().splitlines() if line.startswith("grant.")]


def cert_header(stack) -> str:
    return f":{base64.b64encode(stack.leaf.cert.public_bytes(Encoding.DER)).decode()}:"


def assert_no_token(stack, resp, before):
    assert resp.status != 200 or "access_token" not in resp.json(), resp.body
    assert not any(g.startswith("grant.success") for g in grants(stack)[len(before):])


SPELLINGS = ["client-cert", "client_cert", "Client-Cert", "CLIENT_CERT"]


def test_jwt_svid_with_smuggled_certificate_headers(stack):
    """The filter sets x-spiffe-id for the JWT-SVID; the client adds the validated leaf as
    Client-Cert in every spelling (and its own x-spiffe-id)."""
    before = grants(stack)
    headers = [(name, cert_header(stack)) for name in SPELLINGS]
    headers += [("x-spiffe-id", DEMO), ("x_spiffe_id", DEMO)]
    params = client.assertion_params(pki.mint_svid(KEY, DEMO, ISSUER), client_id=DEMO)
    assert_no_token(stack, client.post_form(stack.port, TOKEN_PATH, params, headers), before)


def test_plain_http_smuggled_identity_and_certificate(stack):
    before = grants(stack)
    headers = [(name, cert_header(stack)) for name in SPELLINGS]
    headers += [("x-spiffe-id", DEMO), ("X_SPIFFE_ID", DEMO)]
    resp = client.post_form(stack.port, TOKEN_PATH, TOKEN_REQUEST, headers)
    assert_no_token(stack, resp, before)


@pytest.mark.parametrize("which", ["plain", "foreign"])
def test_mtls_unvalidated_certificate_with_jwt_svid(stack, which):
    """A non-SPIFFE certificate, or another CA's certificate naming the same SPIFFE ID, on the
    connection, a valid JWT-SVID in the body, the leaf also sent as Client-Cert."""
    before = grants(stack)
    params = client.assertion_params(pki.mint_svid(KEY, DEMO, ISSUER), client_id=DEMO)
    headers = [(name, cert_header(stack)) for name in SPELLINGS]
    resp = stack.post_mtls(params, getattr(stack, which), headers)
    assert_no_token(stack, resp, before)


@pytest.mark.parametrize("which", ["plain", "foreign"])
def test_mtls_unvalidated_certificate_alone(stack, which):
    before = grants(stack)
    resp = stack.post_mtls(TOKEN_REQUEST, getattr(stack, which),
                           [("x-spiffe-id", DEMO), ("client-cert", cert_header(stack))])
    assert_no_token(stack, resp, before)


def test_valid_x509_svid_and_jwt_svid_together(stack):
    """Both credentials of the same client: whatever the verdict, a token (if any) is bound
    to the validated certificate."""
    before = grants(stack)
    params = client.assertion_params(pki.mint_svid(KEY, DEMO, ISSUER), client_id=DEMO)
    resp = stack.post_mtls(params, stack.files)
    if resp.status == 200:
        claims = json.loads(base64.urlsafe_b64decode(
            resp.json()["access_token"].split(".")[1] + "=="))
        der = stack.leaf.cert.public_bytes(Encoding.DER)
        want = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        assert claims["cnf"] == {"x5t#S256": want}
    else:
        assert_no_token(stack, resp, before)


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
