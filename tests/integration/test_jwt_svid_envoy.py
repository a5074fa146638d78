"""JWT-SVID client authentication through Envoy (one Envoy for the whole module).

Trust domains ``example.org`` and ``example.net`` are configured, each with its own HTTPS
bundle endpoint. Requirement IDs (JWT-4, AUD-2, ...) refer to
/work/shared/spec/requirements.md; J*/Q* are its test vectors (sections 4.2 and 4.5).
Expected responses are those of the README's "Error responses" table.
"""

from __future__ import annotations

import time

import pytest
from conftest import (ISSUER, TOKEN_PATH, assert_invalid_client, assert_invalid_request,
                      assert_nothing_forwarded, start_stack)

from harness import client, pki

ORG, NET = "example.org", "example.net"
DEMO = "spiffe://example.org/demo-client"
OTHER = "spiffe://example.org/other-client"
PLAIN = "spiffe://example.org/plain-client"  # registered without client_id
NET_CLIENT = "spiffe://example.net/net-client"

KEYS = {
    "org": pki.ec_key("org-ec256"),
    "org384": pki.ec_key("org-ec384", "P-384"),
    "org_rsa": pki.rsa_key("org-rsa2048"),
    "org_shared": pki.ec_key("shared-kid"),  # same kid as net_shared, different key
    "net": pki.ec_key("net-ec256"),
    "net_shared": pki.ec_key("shared-kid"),
}
CLIENTS = [
    {"spiffe_id": DEMO, "client_id": "demo-client"},
    {"spiffe_id": OTHER, "client_id": "other-client"},
    {"spiffe_id": PLAIN},
    {"spiffe_id": NET_CLIENT, "client_id": "net-client"},
]
SPOOFED = [("x-spiffe-id", "spiffe://example.org/admin"), ("x-oauth-client-id", "admin")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-main"),
        {ORG: [KEYS["org"], KEYS["org384"], KEYS["org_rsa"], KEYS["org_shared"]],
         NET: [KEYS["net"], KEYS["net_shared"]]},
        CLIENTS,
    )
    try:
        for key, sub in ((KEYS["org"], DEMO), (KEYS["net"], NET_CLIENT)):
            assert s.wait_until_accepted(svid(sub, key=key)), (
                f"bundle for {sub} not loaded within 15 s:\n{s.envoy.log_tail(60)}")
        yield s
    finally:
        s.stop()


def svid(sub: str = DEMO, key: pki.SigningKey = KEYS["org"], aud=ISSUER, **kwargs) -> str:
    return pki.mint_svid(key, sub, aud, **kwargs)


def assert_token_issued(resp: client.Response, stack, spiffe_id: str, client_id: str,
                        params=None):
    """200 from the AS, which saw exactly one copy of each identity header (and the body
    unchanged, when ``params`` is given)."""
    assert resp.status == 200, (resp.status, resp.body)
    body = resp.json()
    assert body["client_id"] == client_id and body["token_type"] == "Bearer" and body["access_token"]
    assert len(stack.auth.requests) == 1
    seen = stack.auth.requests[0]
    assert seen.header_values("x-spiffe-id") == [spiffe_id]
    assert seen.header_values("x-oauth-client-id") == [client_id]
    if params is not None:
        assert seen.body == client.form(params)


# ------------------------------------------------------------------ accepted


def test_valid_assertion_forwarded_with_identity_headers(stack):
    """CID-1, J baseline: a valid JWT-SVID is forwarded unchanged plus identity headers."""
    params = client.assertion_params(svid())
    resp = stack.post(params)
    assert_token_issued(resp, stack, DEMO, "demo-client", params)
    seen = stack.auth.requests[0]
    assert seen.method == "POST" and seen.path == TOKEN_PATH
    assert seen.header("content-type") == client.FORM
    assert seen.header("content-length") == str(len(client.form(params)))


@pytest.mark.parametrize("variant", [
    "es384_p384", "rs256_rsa2048", "ps256_rsa2048", "typ_absent", "typ_jose",
    "aud_one_element_array", "no_iat", "extra_claims_iss_jti", "exp_inside_skew",
])
def test_valid_variants_accepted(stack, variant):
    """Section 4.2 'also accept' list: JWT-4/5/9, AUD-1, TIME-2 (skew 60 s), JWT-16."""
    now = int(time.time())
    token = {
        "es384_p384": lambda: svid(key=KEYS["org384"]),
        "rs256_rsa2048": lambda: svid(key=KEYS["org_rsa"]),
        "ps256_rsa2048": lambda: svid(key=KEYS["org_rsa"], header={"alg": "PS256"}),
        "typ_absent": lambda: svid(header={"typ": None}),
        "typ_jose": lambda: svid(header={"typ": "JOSE"}),
        "aud_one_element_array": lambda: svid(aud=[ISSUER]),
        "no_iat": lambda: svid(iat=None),
        "extra_claims_iss_jti": lambda: svid(iss="https://evil.example", jti="j-1", x=1),
        "exp_inside_skew": lambda: svid(lifetime=-30, now=now),
    }[variant]()
    resp = stack.post_assertion(token)
    assert_token_issued(resp, stack, DEMO, "demo-client")


def test_client_id_defaults_to_spiffe_id(stack):
    """Contract: a client without client_id is identified by its SPIFFE ID."""
    resp = stack.post_assertion(svid(PLAIN))
    assert_token_issued(resp, stack, PLAIN, PLAIN)


def test_matching_client_id_accepted(stack):
    """CID-2: client_id naming the same client as the assertion → accepted."""
    params = client.assertion_params(svid(), client_id="demo-client")
    assert_token_issued(stack.post(params), stack, DEMO, "demo-client", params)


def test_same_kid_in_own_trust_domain_accepted(stack):
    """Control for JWT-12: kid 'shared-kid' signed by example.org's own key is fine."""
    resp = stack.post_assertion(svid(key=KEYS["org_shared"]))
    assert_token_issued(resp, stack, DEMO, "demo-client")


def test_content_type_with_charset_accepted(stack):
    """REQ-1: 'application/x-www-form-urlencoded; charset=UTF-8' is a form body."""
    params = client.assertion_params(svid())
    resp = stack.post(params, content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert_token_issued(resp, stack, DEMO, "demo-client", params)


def test_unencoded_colons_in_assertion_type_accepted(stack):
    """REQ-7: the URN sent with literal ':' (not %3A) is recognized too."""
    body = (f"grant_type=client_credentials&client_assertion_type={client.JWT_SPIFFE}"
            f"&client_assertion={svid()}").encode()
    assert_token_issued(stack.post(body), stack, DEMO, "demo-client")


def test_query_string_on_token_path_still_authenticated(stack):
    """Contract: the token path is matched on :path without its query."""
    params = client.assertion_params(svid())
    resp = stack.post(params, path=TOKEN_PATH + "?foo=bar")
    assert_token_issued(resp, stack, DEMO, "demo-client", params)


@pytest.mark.parametrize("chunked", [True, False], ids=["transfer-encoding-chunked", "content-length"])
def test_body_in_several_pieces(stack, chunked):
    """EDGE-4: body split in the middle of client_assertion, sent slowly → same as unchunked."""
    assertion = svid()
    body = client.form(client.assertion_params(assertion))
    cut = body.index(assertion.encode()) + len(assertion) // 2
    pieces = [body[:20], body[20:cut], body[cut:cut + 7], body[cut + 7:]]
    resp = client.post_in_pieces(stack.port, TOKEN_PATH, pieces, chunked=chunked, delay=0.15)
    assert resp.status == 200, (resp.status, resp.body)
    assert resp.json()["client_id"] == "demo-client"
    [seen] = stack.auth.requests
    assert seen.body == body
    assert seen.header_values("x-spiffe-id") == [DEMO]
    assert seen.header_values("x-oauth-client-id") == ["demo-client"]


# -------------------------------------------------------------- invalid_client


def test_expired_assertion(stack):
    """TIME-2, J23, ERR-1: exp = now-120 with 60 s skew → 401 invalid_client, AS sees nothing."""
    now = int(time.time())
    resp = stack.post_assertion(svid(lifetime=-120, now=now, iat=now - 420))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("aud", [
    pytest.param(ISSUER + TOKEN_PATH, id="AUD-3_J20_token_endpoint_url"),
    pytest.param([ISSUER, "https://rs.example.com"], id="AUD-2_J19_two_audiences"),
    pytest.param(ISSUER + "/", id="AUD-4_J21_trailing_slash"),
    pytest.param("HTTPS://as.example.com", id="AUD-4_J21_uppercase_scheme"),
    pytest.param(None, id="AUD-1_J18_missing"),
    pytest.param([], id="AUD-1_J18_empty_array"),
])
def test_wrong_audience(stack, aud):
    """AUD-*: the audience must be exactly the issuer, as a string or a one-element array."""
    assert_invalid_client(stack.post_assertion(svid(aud=aud)))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("signer", ["net", "net_shared"],
                         ids=["JWT-12_kid_only_in_example.net", "JWT-12_J13_same_kid_in_both"])
def test_key_from_other_trust_domain(stack, signer):
    """JWT-12, J13: sub in example.org, signed by an example.net bundle key → rejected,
    also when the kid exists in example.org's bundle too (that bundle's key is tried only)."""
    assert_invalid_client(stack.post_assertion(svid(DEMO, key=KEYS[signer])))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("header_b64", [
    pytest.param("eyJhbGciOiJub25lIn0", id="J1_exact_vector"),
    pytest.param(pki.b64url_json({"alg": "none", "kid": "org-ec256", "typ": "JWT"}), id="J1_with_kid"),
])
def test_alg_none(stack, header_b64):
    """JWT-4, J1: unsecured JWT (alg none, empty signature) → invalid_client."""
    payload = pki.b64url_json(pki.svid_claims(DEMO, ISSUER))
    token = pki.sign_compact(header_b64, payload, KEYS["org"], alg="none")
    assert token.endswith(".")
    assert_invalid_client(stack.post_assertion(token))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("kid", ["no-such-kid", "ORG-EC256"], ids=["J12_unknown", "J12_case_changed"])
def test_unknown_kid(stack, kid):
    """JWT-11, J12: kid not in the trust domain's bundle (exact, case-sensitive) → rejected."""
    assert_invalid_client(stack.post_assertion(svid(header={"kid": kid})))
    assert_nothing_forwarded(stack)


def test_unregistered_spiffe_id(stack):
    """CID-1: validly signed SVID for a SPIFFE ID that is not a registered client."""
    assert_invalid_client(stack.post_assertion(svid("spiffe://example.org/unregistered")))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("client_id", ["other-client", "spiffe://example.org/other"],
                         ids=["registered_other_client", "Q6_other_spiffe_id"])
def test_client_id_naming_another_client(stack, client_id):
    """CID-2, J29, Q6: client_id that names a different client than the assertion."""
    assert_invalid_client(stack.post_assertion(svid(), client_id=client_id))
    assert_nothing_forwarded(stack)


def test_basic_authorization_plus_assertion(stack):
    """REQ-9, Q2, FC-12 a (README "Mixed methods"): Authorization: Basic + assertion → 400
    invalid_request (RFC 6749 §5.2: more than one mechanism), without a challenge."""
    resp = stack.post_assertion(svid(), headers=[("Authorization", "Basic bXktb2F1dGgtY2xpZW50Ondyb25n")])
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)


def test_client_secret_plus_assertion(stack):
    """REQ-9, Q3, FC-12 b: client_secret together with an assertion → 400 invalid_request."""
    assert_invalid_request(stack.post_assertion(svid(), client_secret="wrong"))
    assert_nothing_forwarded(stack)


def _odd_token(kind: str) -> str:
    claims = pki.svid_claims(DEMO, ISSUER)
    payload = pki.b64url_json(claims)
    org = KEYS["org"]
    if kind == "J4_es384_with_p256_key":
        return svid(header={"alg": "ES384"})
    if kind == "J6_der_signature":
        return pki.sign_compact(pki.b64url_json(pki.svid_header(org)), payload, org, ecdsa_der=True)
    if kind == "J8_jku_attacker_key":
        attacker = pki.ec_key("org-ec256")
        header = pki.svid_header(attacker, jku="https://attacker.example/jwks.json")
        return pki.mint_jwt(header, claims, attacker)
    if kind == "J9_crit":
        return svid(header={"crit": ["exp"]})
    if kind == "J11_kid_absent":
        return svid(header={"kid": None})
    if kind == "flipped_payload_byte":
        h, p, s = svid().split(".")
        forged = pki.b64url_json(dict(claims, sub=OTHER))
        return f"{h}.{forged}.{s}"
    if kind.startswith("J7_typ_"):
        return svid(header={"typ": kind.removeprefix("J7_typ_")})
    if kind == "J27_duplicate_sub":
        # first sub is the registered client, last one is not: reject or last-wins both fail
        raw = (f'{{"sub":"{DEMO}","aud":"{ISSUER}","exp":{claims["exp"]},'
               f'"sub":"spiffe://example.org/unregistered"}}')
        return pki.sign_compact(pki.b64url_json(pki.svid_header(org)), pki.b64url(raw), org)
    if kind == "J28_padded_header":
        return pki.sign_compact(pki.b64url_json(pki.svid_header(org)) + "=", payload, org)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "J4_es384_with_p256_key", "J6_der_signature", "J8_jku_attacker_key", "J9_crit",
    "J11_kid_absent", "flipped_payload_byte", "J7_typ_at+jwt", "J7_typ_client-authentication+jwt",
    "J27_duplicate_sub", "J28_padded_header",
])
def test_malformed_or_forged_jwt(stack, kind):
    """JWT-3/5/7/9/10/11/12 and JWT-1/2: section 4.2 reject rows → invalid_client."""
    assert_invalid_client(stack.post_assertion(_odd_token(kind)))
    assert_nothing_forwarded(stack)


# ------------------------------------------------------------- invalid_request


def test_repeated_client_assertion(stack):
    """REQ-3, Q1, ERR-2: client_assertion twice (same value) → 400 invalid_request."""
    token = svid()
    params = client.assertion_params(token) + [("client_assertion", token)]
    assert_invalid_request(stack.post(params))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("assertion_type", [
    client.JWT_SPIFFE.upper(), client.JWT_SPIFFE + " ",
], ids=["Q5_uppercase", "trailing_space"])
def test_near_miss_assertion_type(stack, assertion_type):
    """REQ-6, Q5: assertion type differing only in case/white space → 400, not forwarded."""
    params = [("grant_type", "client_credentials"), ("client_assertion_type", assertion_type),
              ("client_assertion", svid())]
    assert_invalid_request(stack.post(params))
    assert_nothing_forwarded(stack)


def test_missing_client_assertion(stack):
    """ERR-2 (decision): jwt-spiffe type without client_assertion → 400 invalid_request."""
    params = [("grant_type", "client_credentials"), ("client_assertion_type", client.JWT_SPIFFE)]
    assert_invalid_request(stack.post(params))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_token_request_that_is_not_a_form(stack, content_type):
    """REQ-1, FC-13 c/d: a POST to the token path that is not a form body → 400, not forwarded."""
    body = ('{"client_assertion_type":"%s","client_assertion":"%s"}'
            % (client.JWT_SPIFFE, svid())).encode()
    headers = [("content-type", content_type)] if content_type else []
    resp = client.request(stack.port, "POST", TOKEN_PATH, body, headers)
    assert_invalid_request(resp)
    assert_nothing_forwarded(stack)


def test_body_over_limit(stack):
    """REQ-12: a body over limits.max_body_bytes (64 KiB) → 413 invalid_request, not forwarded."""
    params = client.assertion_params(svid()) + [("padding", "x" * (70 * 1024))]
    resp = stack.post(params)
    assert resp.status == 413, (resp.status, resp.body)
    assert resp.json() == {"error": "invalid_request",
                           "error_description": "token request body too large"}
    assert resp.header_values("cache-control") == ["no-store"]
    assert_nothing_forwarded(stack)


def test_assertion_over_limit(stack):
    """REQ-12, J30, FC-29: a 20 KiB assertion (limit 16 KiB) → 401 invalid_client."""
    assert_invalid_client(stack.post_assertion("e" * (20 * 1024)))
    assert_nothing_forwarded(stack)


def test_client_id_spelled_as_spiffe_id_of_client_with_other_id(stack):
    """CID-2: the client registered for DEMO is "demo-client"; client_id=<DEMO's SPIFFE ID>
    names no such client → invalid_client."""
    assert_invalid_client(stack.post_assertion(svid(), client_id=DEMO))
    assert_nothing_forwarded(stack)


# ------------------------------------------------------- pass-through, headers


def _assert_forwarded_as_is(stack, method: str, path: str, body: bytes):
    [seen] = stack.auth.requests
    assert (seen.method, seen.path, seen.body) == (method, path, body)
    assert seen.header_values("x-spiffe-id") == []
    assert seen.header_values("x-oauth-client-id") == []
    return seen


def test_request_without_assertion_passes_through(stack):
    """EDGE-5: no client_assertion_type → forwarded unchanged; the AS answers."""
    params = [("grant_type", "client_credentials"), ("client_id", "someone"), ("scope", "a b")]
    resp = stack.post(params)
    assert (resp.status, resp.json()) == (401, {"error": "invalid_client"})  # the AS's own answer
    seen = _assert_forwarded_as_is(stack, "POST", TOKEN_PATH, client.form(params))
    assert seen.header("content-type") == client.FORM
    assert seen.header("content-length") == str(len(client.form(params)))


def test_other_assertion_type_passes_through(stack):
    """REQ-7: a jwt-bearer assertion (even carrying a JWT-SVID) is not processed."""
    params = [("grant_type", "client_credentials"),
              ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
              ("client_assertion", svid())]
    resp = stack.post(params)
    assert (resp.status, resp.json()) == (401, {"error": "invalid_client"})
    _assert_forwarded_as_is(stack, "POST", TOKEN_PATH, client.form(params))


def test_assertion_only_in_query_not_authenticated(stack):
    """REQ-1, REQ-2, Q4: credentials in the query string never authenticate anyone."""
    query = client.form(client.assertion_params(svid())).decode()
    resp = client.request(stack.port, "GET", f"{TOKEN_PATH}?{query}")
    assert resp.status == 405  # the AS's answer to GET /token
    _assert_forwarded_as_is(stack, "GET", f"{TOKEN_PATH}?{query}", b"")
    stack.auth.clear()
    resp = stack.post([("grant_type", "client_credentials")], path=f"{TOKEN_PATH}?{query}")
    assert (resp.status, resp.json()) == (401, {"error": "invalid_client"})
    _assert_forwarded_as_is(stack, "POST", f"{TOKEN_PATH}?{query}", b"grant_type=client_credentials")


def test_spoofed_identity_headers_removed_on_client_secret_request(stack):
    """EDGE-1, EDGE-5: client_secret request with forged identity headers → forwarded,
    forged headers removed; the AS then refuses it itself."""
    params = [("grant_type", "client_credentials"), ("client_id", "demo-client"),
              ("client_secret", "s3cret")]
    resp = stack.post(params, headers=SPOOFED)
    assert (resp.status, resp.json()) == (401, {"error": "invalid_client"})
    _assert_forwarded_as_is(stack, "POST", TOKEN_PATH, client.form(params))


def test_spoofed_identity_headers_removed_on_other_path(stack):
    """EDGE-1: identity headers are stripped on every path, not only the token path."""
    resp = client.request(stack.port, "GET", "/userinfo", headers=SPOOFED)
    assert (resp.status, resp.json()) == (200, {"ok": True})
    _assert_forwarded_as_is(stack, "GET", "/userinfo", b"")


def test_spoofed_identity_headers_replaced_on_valid_request(stack):
    """EDGE-1: forged identity headers on a valid request → the AS sees only the filter's."""
    params = client.assertion_params(svid())
    resp = stack.post(params, headers=SPOOFED + SPOOFED)
    assert_token_issued(resp, stack, DEMO, "demo-client", params)


# ------------------------------------------------------- not implemented, ignored safely


def test_wit_headers_alone_not_authenticated(stack):
    """WIT-0, WIT-1, WIT-2 (WIT-SVID method not implemented, ignored safely): a token request
    that authenticates only with OAuth-Client-Attestation / -PoP headers, carrying a WIT signed
    by the trust domain's own key, gets no identity headers: it is forwarded unchanged (the
    attestation headers too) and the AS refuses it itself."""
    wit = svid(header={"typ": "wit+jwt"}, jti="wit-1",
               cnf={"jwk": {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}})
    pop = "eyJhbGciOiJFUzI1NiIsInR5cCI6Im9hdXRoLWNsaWVudC1hdHRlc3RhdGlvbi1wb3Arand0In0.e30.AAAA"
    params = [("grant_type", "client_credentials"), ("client_id", "demo-client")]
    resp = stack.post(params, headers=[("OAuth-Client-Attestation", wit),
                                       ("OAuth-Client-Attestation-PoP", pop)])
    assert (resp.status, resp.json()) == (401, {"error": "invalid_client"})  # the AS's answer
    seen = _assert_forwarded_as_is(stack, "POST", TOKEN_PATH, client.form(params))
    assert seen.header_values("oauth-client-attestation") == [wit]
    assert seen.header_values("oauth-client-attestation-pop") == [pop]


def test_metadata_not_served_or_rewritten(stack):
    """META-1: without `as_metadata` configured (the default) the filter neither serves nor
    rewrites RFC 8414 metadata; the metadata request reaches the AS unchanged and the AS's answer
    comes back as is (test_as_metadata.py: rewriting when configured)."""
    path = "/.well-known/oauth-authorization-server"
    resp = client.request(stack.port, "GET", path)
    assert (resp.status, resp.json()) == (200, {"ok": True})
    _assert_forwarded_as_is(stack, "GET", path, b"")
