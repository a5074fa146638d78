"""Request shapes beyond a plain HTTP/1 form POST (own Envoy): HTTP/2 with split DATA frames and
request trailers, token-path spellings an AS may normalise, identity headers spelled with
underscores or sent as trailers. EDGE-1, EDGE-4, FC-14, FC-21 in the requirements checklist."""

from __future__ import annotations

import pytest
from conftest import (ISSUER, TOKEN_PATH, assert_invalid_client, assert_invalid_request,
                      assert_nothing_forwarded, start_stack)

from harness import client, h2client, pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
KEY, ATTACKER = pki.ec_key("org-ec256"), pki.ec_key("org-ec256")  # same kid, other key


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-shapes"), {ORG: [KEY]},
                    [{"spiffe_id": DEMO, "client_id": "demo-client"}])
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def form_body(assertion: str, **extra) -> bytes:
    return client.form(client.assertion_params(assertion, **extra))


def assert_authenticated(resp, stack):
    assert resp is not None and resp.status == 200, resp
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [DEMO]
    assert seen.header_values("x-oauth-client-id") == ["demo-client"]
    return seen


def assert_vm_alive(stack):
    """FC-17: the VM did not trap — a good request still authenticates."""
    stack.auth.clear()
    assert_authenticated(stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER)), stack)


# ------------------------------------------------------------------- HTTP/2


def test_http2_body_split_inside_the_assertion(stack):
    """EDGE-4, FC-14: three DATA frames, split inside client_assertion → accepted."""
    body = form_body(pki.mint_svid(KEY, DEMO, ISSUER))
    cut = body.index(b"client_assertion=") + 30
    pieces = [body[:cut], body[cut:cut + 40], body[cut + 40:]]
    resp = h2client.request(stack.port, "POST", TOKEN_PATH, [("content-type", client.FORM)], pieces)
    assert_authenticated(resp, stack)


def test_http2_body_ending_with_trailers_is_decided(stack):
    """FC-14: no DATA frame carries END_STREAM, trailers end the request → still decided."""
    body = form_body(pki.mint_svid(KEY, DEMO, ISSUER))
    resp = h2client.request(stack.port, "POST", TOKEN_PATH, [("content-type", client.FORM)],
                            [body[:50], body[50:]], trailers=[("x-checksum", "1")])
    assert_authenticated(resp, stack)


def test_http2_forged_assertion_ending_with_trailers_rejected(stack):
    """FC-14: the trailers path rejects like the plain path; nothing reaches the AS."""
    body = form_body(pki.mint_svid(ATTACKER, DEMO, ISSUER))
    resp = h2client.request(stack.port, "POST", TOKEN_PATH, [("content-type", client.FORM)],
                            [body], trailers=[("x-checksum", "1")])
    assert resp is not None
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_identity_headers_in_trailers_are_removed(stack):
    """FC-21: identity headers sent as request trailers never reach the AS (the filter removes
    them; this HTTP/1 upstream would drop trailers anyway), and nothing traps."""
    body = b"grant_type=client_credentials&client_id=x&client_secret=y"
    resp = h2client.request(stack.port, "POST", TOKEN_PATH, [("content-type", client.FORM)],
                            [body], trailers=[("x-spiffe-id", DEMO), ("x_oauth_client_id", "demo-client")])
    assert resp is not None and resp.status == 401  # the example AS's own answer
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [] and seen.header_values("x_oauth_client_id") == []
    assert_vm_alive(stack)


# --------------------------------------------------------- token path spellings


@pytest.mark.parametrize("path", ["/TOKEN", "/token/", "/token;jsessionid=1", "//token",
                                  "/x/../token", "/%74oken", "/Token?x=1", "/token%0a",
                                  "/token%20", "/token.", "/token.json", "/to%E2%84%AAen",
                                  "/%5ctoken", "/%2574oken"])
def test_token_path_spellings_are_authenticated(stack, path):
    """An AS that normalises its routes must not be reachable around the filter: a forged
    assertion on a spelling of the token path is rejected by the filter itself."""
    resp = client.post_form(stack.port, path, client.assertion_params(pki.mint_svid(ATTACKER, DEMO, ISSUER)))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_lowercase_method_over_http2_is_authenticated(stack):
    """HTTP/2 lets a client send `:method: post`, which Envoy forwards and frameworks such as
    Flask upper-case: the filter treats it as the POST it becomes."""
    body = form_body(pki.mint_svid(ATTACKER, DEMO, ISSUER))
    resp = h2client.request(stack.port, "post", TOKEN_PATH, [("content-type", client.FORM)], [body])
    assert resp is not None
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_token_path_spelling_with_repeated_parameter(stack):
    """REQ-3 holds on a token path spelling too."""
    token = pki.mint_svid(KEY, DEMO, ISSUER)
    params = client.assertion_params(token) + [("client_assertion", token)]
    assert_invalid_request(client.post_form(stack.port, "/TOKEN", params))
    assert_nothing_forwarded(stack)


# ------------------------------------------------------------ identity headers


def identity_like(seen) -> list[tuple[str, str]]:
    """Every header the AS received that a CGI-style server would read as an identity header."""
    return sorted((k, v) for k, v in seen.headers
                  if k.lower().replace("_", "-") in ("x-spiffe-id", "x-oauth-client-id"))


def test_underscore_and_duplicate_identity_headers_removed(stack):
    """EDGE-1, FC-21 d: every `-`/`_` spelling and every copy of the identity headers goes;
    the AS sees exactly the filter's values."""
    headers = [("x_spiffe_id", "spiffe://example.org/admin"), ("X-Spiffe-Id", "spiffe://example.org/admin"),
               ("x-spiffe-id", "spiffe://example.org/root"), ("x_oauth-client_id", "admin"),
               ("X-OAUTH-CLIENT-ID", "admin")]
    resp = client.post_form(stack.port, TOKEN_PATH,
                            client.assertion_params(pki.mint_svid(KEY, DEMO, ISSUER)), headers)
    seen = assert_authenticated(resp, stack)
    assert identity_like(seen) == [("x-oauth-client-id", "demo-client"), ("x-spiffe-id", DEMO)]


def test_underscore_identity_headers_removed_on_pass_through(stack):
    """FC-21 a: on a request the filter does not authenticate, spoofed spellings are removed."""
    headers = [("x_spiffe_id", DEMO), ("x-oauth_client-id", "demo-client")]
    resp = client.post_form(stack.port, TOKEN_PATH,
                            [("grant_type", "client_credentials"), ("client_id", "x"), ("client_secret", "y")],
                            headers)
    assert resp.status == 401  # the example AS refuses: no identity from the filter
    [seen] = stack.auth.requests
    assert identity_like(seen) == []
