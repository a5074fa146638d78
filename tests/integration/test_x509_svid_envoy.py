"""X509-SVID client authentication over mutual TLS through Envoy (own Envoy): the listener
accepts any client certificate and the filter validates it against the x509-svid authorities of
the trust domain its URI SAN names. X509-*, CID-4, CID-5, REQ-10, REQ-11, EDGE-1, EDGE-3 and
requirements §4.4 C1 … C18."""

from __future__ import annotations

import datetime as dt
import ssl
from urllib.parse import quote

import pytest
from conftest import (ISSUER, TOKEN_PATH, assert_invalid_client, assert_invalid_request,
                      assert_nothing_forwarded, start_stack)

from harness import client, h2client, pki, svid

ORG, NET = "example.org", "example.net"
DEMO = "spiffe://example.org/demo-client"
ORG_CA, NET_CA = svid.authority(ORG), svid.authority(NET)
ORG_MID = svid.intermediate(ORG_CA, ORG)
JWT_KEY = pki.ec_key("org-ec256")
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-x509"), {ORG: [JWT_KEY], NET: []},
                    [{"spiffe_id": DEMO}, {"spiffe_id": "spiffe://example.net/net-client"}],
                    x509_authorities={ORG: [ORG_CA], NET: [NET_CA]})
    try:
        assert s.wait_until_accepted(pki.mint_svid(JWT_KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def files(stack, leaf: svid.Issued, chain=()):
    return svid.client_files(stack.workdir / "clients", leaf, chain)


def token_request(client_id: str | None = DEMO, **extra):
    params = [("grant_type", "client_credentials")]
    if client_id is not None:
        params.append(("client_id", client_id))
    return params + list(extra.items())


def assert_authenticated(resp, stack, spiffe_id=DEMO, client_id=DEMO):
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [spiffe_id]
    assert seen.header_values("x-oauth-client-id") == [client_id]
    assert seen.header_values("x-forwarded-client-cert") == []  # removed before the AS
    return seen


# ------------------------------------------------------------------- accepted


def test_leaf_from_the_root(stack):
    """X509-1: a leaf issued straight by the trust domain's authority."""
    resp = stack.post_mtls(token_request(), files(stack, svid.leaf(ORG_CA, [DEMO])))
    assert_authenticated(resp, stack)


def test_leaf_via_intermediate(stack):
    """X509-1, X509-13: the client sends leaf + intermediate; Envoy's XFCC carries the chain."""
    resp = stack.post_mtls(token_request(), files(stack, svid.leaf(ORG_MID, [DEMO]), [ORG_MID]))
    assert_authenticated(resp, stack)


def test_jwt_svid_still_works_on_the_tls_listener_without_certificate(stack):
    """RFC 8705 §6.1: client certificates are optional; the JWT-SVID path works over TLS."""
    resp = client.post_form(stack.envoy.mtls_port, "/token",
                            client.assertion_params(pki.mint_svid(JWT_KEY, DEMO, ISSUER)),
                            tls=stack.tls())
    assert_authenticated(resp, stack)


def test_jwt_svid_with_a_certificate_of_the_same_id(stack):
    """REQ-10: assertion and certificate naming the same SPIFFE ID → the assertion decides."""
    resp = stack.post_mtls(client.assertion_params(pki.mint_svid(JWT_KEY, DEMO, ISSUER)),
                           files(stack, svid.leaf(ORG_CA, [DEMO])))
    assert_authenticated(resp, stack)


# ------------------------------------------------------------------- rejected


@pytest.mark.parametrize("make", [
    pytest.param(lambda: (svid.leaf(NET_CA, [DEMO]), []), id="C11-other-trust-domains-root"),
    pytest.param(lambda: (lambda sub: (svid.leaf(sub, [DEMO]), [sub]))(svid.intermediate(NET_CA, ORG)),
                 id="C11-other-domains-sub-CA-claiming-example.org"),
    pytest.param(lambda: (svid.leaf(ORG_CA, [DEMO, "spiffe://example.org/other"]), []), id="C1-two-URI-SANs"),
    pytest.param(lambda: (svid.leaf(ORG_CA, [DEMO], ca=True), []), id="C6-leaf-CA-true"),
    pytest.param(lambda: (svid.leaf(ORG_CA, [DEMO], usage={"digital_signature": True, "key_cert_sign": True}), []),
                 id="C7-keyCertSign"),
    pytest.param(lambda: (svid.leaf(ORG_CA, [DEMO], not_after=svid.NOW - dt.timedelta(seconds=1),
                                    not_before=svid.NOW - DAY), []), id="C10-expired"),
    pytest.param(lambda: (svid.leaf(ORG_CA, [DEMO], not_before=svid.NOW + DAY,
                                    not_after=svid.NOW + 2 * DAY), []), id="C10-not-yet-valid"),
    pytest.param(lambda: (lambda m: (svid.leaf(m, [DEMO]), [m]))(
        svid.intermediate(ORG_CA, ORG, not_after=svid.NOW - dt.timedelta(minutes=1))), id="expired-intermediate"),
    pytest.param(lambda: (lambda m: (svid.leaf(m, [DEMO]), [m]))(svid.intermediate(ORG_CA, ORG, ca=False)),
                 id="C13-intermediate-CA-false"),
    pytest.param(lambda: (svid.leaf(ORG_MID, [DEMO]), []), id="X509-13-intermediate-not-sent"),
])
def test_invalid_certificates_rejected(stack, make):
    """Every certificate fault → 401 invalid_client; nothing reaches the AS: C1 (two URI SANs,
    EDGE-2: the filter reads the whole leaf, not Envoy's first-URI-SAN attribute), C6, C7, C10,
    C11 (EDGE-3, X509-1), C13, and an intermediate the client did not send (X509-13). FC-22 a b g h, FC-23 a."""
    leaf, chain = make()
    assert_invalid_client(stack.post_mtls(token_request(), files(stack, leaf, chain)))
    assert_nothing_forwarded(stack)


def test_leaf_without_digital_signature_fails_the_handshake(stack):
    """C9, X509-4: Envoy's TLS stack already refuses a client certificate whose key usage lacks
    digitalSignature (it cannot sign the handshake), before the filter; nothing reaches the AS.
    (The filter's own check is unit tested.)"""
    leaf = svid.leaf(ORG_CA, [DEMO], usage={"key_encipherment": True})
    with pytest.raises((ssl.SSLError, ConnectionError)):
        stack.post_mtls(token_request(), files(stack, leaf))
    assert_nothing_forwarded(stack)


def test_missing_client_id(stack):
    """C18, CID-4 (RFC 8705 §2): a valid X509-SVID without client_id → 400 invalid_request."""
    resp = stack.post_mtls(token_request(client_id=None), files(stack, svid.leaf(ORG_CA, [DEMO])))
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)


def test_client_id_not_the_certificates_spiffe_id(stack):
    """C17, CID-5 (draft-02): client_id must equal the URI SAN."""
    resp = stack.post_mtls(token_request(client_id="spiffe://example.org/other"),
                           files(stack, svid.leaf(ORG_CA, [DEMO])))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_certificate_and_assertion_naming_different_ids(stack):
    """Q9, REQ-10, FC-12 c: a certificate for …/other plus an assertion for DEMO → 400."""
    resp = stack.post_mtls(client.assertion_params(pki.mint_svid(JWT_KEY, DEMO, ISSUER)),
                           files(stack, svid.leaf(ORG_CA, ["spiffe://example.org/other"])))
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)


def test_requests_on_one_kept_alive_connection(stack):
    """The chain a connection presented is read once per connection and remembered, yet every
    request on it is decided on its own: the X509-SVID accepted again and again, then a
    client_id that is not the certificate's refused, and, on another connection with the same
    certificate, a JWT-SVID of another ID beside it refused as mixed identities; what one
    connection presented never answers for another (REQ-9, REQ-10, CID-5). (Envoy closes a
    connection after the filter's error answer, so each refusal ends its connection.)"""
    leaf_files = files(stack, svid.leaf(ORG_CA, [DEMO]))
    conns = [client.KeepAlive(stack.envoy.mtls_port, stack.tls(leaf_files)) for _ in range(2)]
    bare = client.KeepAlive(stack.envoy.mtls_port, stack.tls())
    try:
        for conn in conns:
            for _ in range(3):
                stack.auth.clear()
                assert_authenticated(conn.post_form(TOKEN_PATH, token_request()), stack)
        # No certificate on this connection: the others' chain does not count here.
        for _ in range(2):
            stack.auth.clear()
            resp = bare.post_form(TOKEN_PATH, token_request())
            assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's
            [seen] = stack.auth.requests
            assert seen.header_values("x-spiffe-id") == []
        stack.auth.clear()
        assert_invalid_client(conns[0].post_form(TOKEN_PATH, token_request("someone-else")))
        other_id = pki.mint_svid(JWT_KEY, "spiffe://example.org/other", ISSUER)
        assert_invalid_request(conns[1].post_form(
            TOKEN_PATH, client.assertion_params(other_id, client_id=DEMO)))
        assert_nothing_forwarded(stack)
    finally:
        for conn in (*conns, bare):
            conn.close()


def test_concurrent_http2_streams_on_one_mtls_connection(stack):
    """HTTP/2 multiplexing: four token requests held at once as streams of one mTLS connection
    (the chain read once, then remembered for the connection) are each decided on their own: two
    valid X509-SVID requests, a client_id naming another client (401), and a JWT-SVID of another
    ID with a spoofed XFCC (400, mixed identities); then streams of a connection without a
    certificate are not authenticated by the first connection's chain (REQ-9, REQ-10, REQ-11,
    CID-5)."""
    tls = stack.tls(files(stack, svid.leaf(ORG_CA, [DEMO])))
    other = pki.mint_svid(JWT_KEY, "spiffe://example.org/other", ISSUER)
    spoof = ("x-forwarded-client-cert", f"Hash=00;URI={quote(DEMO)}")
    form = [("content-type", client.FORM)]
    got = h2client.multiplexed(stack.envoy.mtls_port, [
        ("POST", TOKEN_PATH, form, client.form(token_request())),
        ("POST", TOKEN_PATH, form, client.form(token_request("someone-else"))),
        ("POST", TOKEN_PATH, [*form, spoof],
         client.form(client.assertion_params(other, client_id=DEMO))),
        ("POST", TOKEN_PATH, form, client.form(token_request())),
    ], tls.context, tls.server_name)
    assert [r and r.status for r in got] == [200, 401, 400, 200], [r and r.body for r in got]
    assert [r.header_values("x-spiffe-id") for r in stack.auth.requests] == [[DEMO], [DEMO]]
    assert all(r.header_values("x-forwarded-client-cert") == [] for r in stack.auth.requests)
    stack.auth.clear()
    bare = stack.tls()
    got = h2client.multiplexed(stack.envoy.mtls_port, [
        ("POST", TOKEN_PATH, [*form, spoof], client.form(token_request())) for _ in range(2)
    ], bare.context, bare.server_name)
    assert [r and r.status for r in got] == [401, 401]  # the AS's own answer: passed through
    assert [r.header_values("x-spiffe-id") for r in stack.auth.requests] == [[], []]


def test_spoofed_xfcc_without_client_certificate(stack):
    """REQ-11, EDGE-1: an XFCC header sent over a connection without a client certificate is
    no credential: the request passes through unauthenticated and the header never reaches
    the AS."""
    leaf = svid.leaf(ORG_CA, [DEMO])
    spoofed = f'Hash=00;Cert="{quote(leaf.pem.decode())}";URI={DEMO}'
    for tls in (None, stack.tls()):
        stack.auth.clear()
        port = stack.port if tls is None else stack.envoy.mtls_port
        resp = client.post_form(port, "/token", token_request(), [("x-forwarded-client-cert", spoofed)], tls=tls)
        assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's own answer
        [seen] = stack.auth.requests
        assert seen.header_values("x-forwarded-client-cert") == []
        assert seen.header_values("x-spiffe-id") == []


def test_non_spiffe_certificate_is_incidental(stack):
    """RFC 8705 §6.1: a client certificate without a SPIFFE URI SAN is not an X509-SVID; the
    request is left to the AS (which sees no identity headers)."""
    resp = stack.post_mtls(token_request(client_id="x"),
                           files(stack, svid.leaf(ORG_CA, [], dns=["w.example.org"])))
    assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's own answer
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == []


def test_certificate_beside_another_assertion_type_is_incidental(stack):
    """REQ-9 (one method per request): an X509-SVID next to a jwt-bearer assertion gives the AS
    no identity headers; the AS judges the assertion itself."""
    params = token_request(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                           client_assertion="eyJ.admin.sig")
    resp = stack.post_mtls(params, files(stack, svid.leaf(ORG_CA, [DEMO])))
    assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's own answer
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [] and seen.header_values("x-oauth-client-id") == []


def test_invalid_spiffe_certificate_beside_a_valid_assertion(stack):
    """REQ-10: a certificate with two URI SANs (one of them the assertion's ID) is a conflict."""
    leaf = svid.leaf(ORG_CA, ["spiffe://example.org/other", DEMO])
    resp = stack.post_mtls(client.assertion_params(pki.mint_svid(JWT_KEY, DEMO, ISSUER)), files(stack, leaf))
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)


def test_san_the_parser_cannot_read_does_not_hide_a_spiffe_claim(stack):
    """REQ-10, FC-12 c, FC-23: a certificate for …/other whose subjectAltName also holds an
    x400Address (accepted by the TLS stack, unreadable for the certificate parser) still claims
    a SPIFFE ID: beside a JWT-SVID for DEMO it is a conflict (400), and alone it is an X509-SVID
    attempt that fails (401) instead of passing through to the AS."""
    other = svid.leaf_with_raw_san(ORG_CA, svid.san_with_x400(["spiffe://example.org/other"]))
    resp = stack.post_mtls(client.assertion_params(pki.mint_svid(JWT_KEY, DEMO, ISSUER)), files(stack, other))
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)
    forged = svid.leaf_with_raw_san(None, svid.san_with_x400([DEMO]))
    resp = stack.post_mtls(token_request(client_id="someone-else"), files(stack, forged))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)
