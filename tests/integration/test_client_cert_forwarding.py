"""What the AS learns of a client certificate (own Envoy): with `client_certificate`
`rfc9440_headers` and `keep_xfcc` on, a validated X509-SVID's chain arrives as RFC 9440
`Client-Cert` / `Client-Cert-Chain` and Envoy's XFCC stays; client-sent copies of the RFC 9440
headers are always removed; the post-02 `x509_client_id: registered` rule binds client ids."""

from __future__ import annotations

import base64

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki, svid

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
ORG_CA = svid.authority(ORG)
ORG_MID = svid.intermediate(ORG_CA, ORG)
JWT_KEY = pki.ec_key("org-ec256")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-cert-forwarding"), {ORG: [JWT_KEY]},
                    [{"spiffe_id": DEMO, "client_id": "demo-client"}],
                    x509_authorities={ORG: [ORG_CA]},
                    x509_client_id="registered",
                    client_certificate={"rfc9440_headers": True, "keep_xfcc": True})
    try:
        assert s.wait_until_accepted(pki.mint_svid(JWT_KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def sf(cert: svid.Issued) -> str:
    """An RFC 8941 byte sequence of the certificate's DER."""
    return f":{base64.b64encode(cert.der).decode()}:"


def test_rfc9440_headers_carry_the_validated_chain(stack):
    leaf = svid.leaf(ORG_MID, [DEMO])
    spoof = [("client-cert", ":AAAA:"), ("client_cert_chain", ":AAAA:")]
    resp = stack.post_mtls([("grant_type", "client_credentials"), ("client_id", "demo-client")],
                           svid.client_files(stack.workdir / "clients", leaf, [ORG_MID]), spoof)
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert seen.header_values("x-oauth-client-id") == ["demo-client"]
    assert seen.header_values("client-cert") == [sf(leaf)]
    assert seen.header_values("client-cert-chain") == [sf(ORG_MID)]
    assert seen.header_values("client_cert_chain") == []
    [xfcc] = seen.header_values("x-forwarded-client-cert")  # kept by configuration
    assert "Hash=" in xfcc and "Chain=" in xfcc


def test_rfc9440_headers_only_after_x509_svid_authentication(stack):
    """A JWT-SVID request gets no Client-Cert, and client-sent copies are removed."""
    resp = stack.post_assertion(pki.mint_svid(JWT_KEY, DEMO, ISSUER), [("client-cert", ":AAAA:")])
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert seen.header_values("client-cert") == []


def test_registered_rule_rejects_the_spiffe_id_as_client_id(stack):
    """CID-5 (post-02): client_id must be the client the SPIFFE ID is registered for."""
    leaf = svid.leaf(ORG_CA, [DEMO])
    resp = stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)],
                           svid.client_files(stack.workdir / "clients", leaf))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_kept_xfcc_never_carries_an_unvalidated_spiffe_certificate(stack):
    """keep_xfcc: a forged certificate claiming DEMO beside another credential (here a Bearer
    header) is not this request's credential and is not validated; the request goes to the AS,
    but without the XFCC header that would hand the AS the forged URI."""
    forged = svid.leaf(svid.authority(ORG), [DEMO])  # under a root the bundle does not hold
    resp = stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)],
                           svid.client_files(stack.workdir / "clients", forged), [("authorization", "Bearer x")])
    assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's own answer
    [seen] = stack.auth.requests
    assert seen.header_values("x-forwarded-client-cert") == []
    assert seen.header_values("x-spiffe-id") == []
