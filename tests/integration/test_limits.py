"""Limits at their edges, in Envoy: the body and assertion caps (set small here), and the
request header size (Envoy's own cap, 60 KiB by default, answered by Envoy with 431 before the
filter runs). REQ-12, FC-29; issue "Conformance … no input that can hurt the VM" (limits).
The bundle key-count cap, the certificate chain cap and the bundle size cap are tested natively
(`bundle::tests::limits_bundle_key_count`, `x509_svid::tests`) and in test_bundle_refresh.py."""

from __future__ import annotations

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import client, pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
KEY = pki.ec_key("org")
MAX_BODY = 4096


def _token(pad: int) -> str:
    return pki.mint_svid(KEY, DEMO, ISSUER, pad="p" * pad)


def _lengths() -> dict[int, int]:
    """Token length → the `pad` claim length that gives it (base64url skips some lengths)."""
    return {len(_token(n)): n for n in range(1500, 1560)}


LENGTHS = _lengths()
# A cap such that tokens of exactly the cap and one more character both exist.
MAX_ASSERTION = min(n for n in LENGTHS if n >= 2048 and n + 1 in LENGTHS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-limits"), {ORG: [KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        limits={"max_body_bytes": MAX_BODY, "max_assertion_bytes": MAX_ASSERTION},
    )
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def token_of_length(length: int) -> str:
    """A valid JWT-SVID exactly ``length`` characters long (padded with a `pad` claim)."""
    token = _token(LENGTHS[length])
    assert len(token) == length
    return token


def body_of_length(length: int) -> bytes:
    """A form body of exactly ``length`` bytes carrying a valid assertion."""
    body = client.form(client.assertion_params(pki.mint_svid(KEY, DEMO, ISSUER)))
    pad = length - len(body) - len("&pad=")
    assert pad >= 0
    return body + b"&pad=" + b"x" * pad


def test_body_at_the_limit_is_read(stack):
    """REQ-12: a body of exactly limits.max_body_bytes is authenticated and forwarded whole."""
    stack.auth.clear()
    body = body_of_length(MAX_BODY)
    resp = stack.post(body)
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert (len(seen.body), seen.header("x-spiffe-id")) == (MAX_BODY, DEMO)


def test_body_one_byte_over_the_limit(stack):
    """REQ-12: one byte more → 413 invalid_request, nothing forwarded."""
    stack.auth.clear()
    resp = stack.post(body_of_length(MAX_BODY + 1))
    assert resp.status == 413, (resp.status, resp.body)
    assert resp.json()["error"] == "invalid_request"
    assert_nothing_forwarded(stack)


def test_assertion_at_the_limit_is_verified(stack):
    """REQ-12, FC-29: an assertion of exactly limits.max_assertion_bytes verifies."""
    resp = stack.post_assertion(token_of_length(MAX_ASSERTION))
    assert resp.status == 200, (resp.status, resp.body)


def test_assertion_one_byte_over_the_limit(stack):
    """REQ-12, FC-29: a valid assertion one character longer → 401 invalid_client, unread."""
    stack.auth.clear()
    offset = stack.envoy.log_size()
    assert_invalid_client(stack.post_assertion(token_of_length(MAX_ASSERTION + 1)))
    assert_nothing_forwarded(stack)
    assert any("JWT-SVID" in line and "longer than" in line for line in stack.envoy.filter_log_lines(offset)), \
        stack.envoy.filter_log_lines(offset)


def test_large_headers_within_envoys_cap(stack):
    """A 50 KiB request header (under Envoy's 60 KiB cap) does not disturb the filter."""
    resp = stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER), headers=[("x-padding", "h" * 50 * 1024)])
    assert resp.status == 200, (resp.status, resp.body)


def test_headers_over_envoys_cap_are_refused_by_envoy(stack):
    """Headers over Envoy's max_request_headers_kb are refused by Envoy itself (431), before
    any filter runs: never a 5xx, never forwarded."""
    stack.auth.clear()
    resp = stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER), headers=[("x-padding", "h" * 70 * 1024)])
    assert resp.status == 431, (resp.status, resp.body)
    assert_nothing_forwarded(stack)
