"""Attacks on dry-run mode (README "Dry run") and its metrics, in Envoy: no request may get
identity headers, an RFC 9440 certificate or a filter error answer in dry run; no client-sent
verdict header may reach the AS in any spelling, as a trailer or over HTTP/2; requests are
still held for a bundle (cold start, unknown kid) and counted exactly once. Review 7: useful
coverage, all expected to pass."""

from __future__ import annotations

import re
import time

import pytest
from conftest import ISSUER, TOKEN_PATH, start_stack

from harness import client, h2client, pki, svid

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
OLD_KEY = pki.ec_key("dry-1")
CA = svid.authority(ORG)
P = "wasmcustom.spiffe_oauth_filter"
VERDICT = "x-spiffe-oauth-verdict"
SMUGGLED = ["x-spiffe-oauth-verdict", "x_spiffe_oauth_verdict", "x-spiffe_oauth-verdict",
            "x-spiffe-id", "x_spiffe_id", "x-oauth-client-id", "x_oauth_client_id",
            "client-cert", "client_cert", "client-cert-chain", "client_cert_chain"]
FILTER_HEADERS = {"x-spiffe-id", "x-oauth-client-id", "client-cert", "client-cert-chain"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Cold start: the bundle endpoint answers only after 1.5 s; requests wait up to 4 s.
    s = start_stack(tmp_path_factory.mktemp("envoy-dry-attacks"), {ORG: [OLD_KEY]},
                    [{"spiffe_id": DEMO}], x509_authorities={ORG: [CA]},
                    dry_run={"enabled": True},
                    client_certificate={"rfc9440_headers": True, "keep_xfcc": False},
                    limits={"max_body_bytes": 2048, "max_assertion_bytes": 1024},
                    bundle_refresh={"initial_delay_ms": 100, "request_wait_ms": 4000,
                                    "on_demand_min_interval_ms": 1000})
    s.bundles[ORG].set_response(delay=1.5)
    try:
        yield s
    finally:
        s.stop()


def only_requests(stats: dict[str, int]) -> dict[str, int]:
    pattern = re.compile(rf"^{re.escape(P)}\.(allowed|denied|passed_through|held)")
    return {k: v for k, v in stats.items() if pattern.match(k)}


def settled(stack) -> dict[str, int]:
    return only_requests(stack.settled_filter_stats())


def delta(before, after) -> dict[str, int]:
    return {k.removeprefix(P + "."): v - before.get(k, 0) for k, v in after.items()
            if v != before.get(k, 0)}


def only_request(stack):
    [seen] = stack.auth.requests
    stack.auth.clear()
    return seen


def assert_no_identity(seen):
    names = {k for k, _ in seen.headers}
    assert not names & FILTER_HEADERS, seen.headers


def test_1_cold_start_is_held_then_forwarded_with_verdict(stack):
    """The first request arrives before any bundle: held (not answered), then forwarded with
    the verdict the bundle gives; held once, allowed once."""
    before = only_requests(stack.filter_stats())
    t0 = time.monotonic()
    resp = stack.post_assertion(pki.mint_svid(OLD_KEY, DEMO, ISSUER))
    waited = time.monotonic() - t0
    assert resp.status == 401  # the example AS's own answer: it saw no identity
    seen = only_request(stack)
    assert seen.header_values(VERDICT) == [f"allowed; method=jwt_svid; spiffe_id={DEMO}"]
    assert_no_identity(seen)
    assert 0.5 < waited < 4.0, waited
    stack.bundles[ORG].set_response(delay=0)
    assert delta(before, settled(stack)) == {"held_for_bundle": 1, "allowed.jwt_svid": 1}


def test_2_unknown_kid_is_held_for_a_refresh(stack):
    time.sleep(1.2)  # past on_demand_min_interval_ms
    new = pki.ec_key("dry-2")
    stack.bundles[ORG].set_response(body=pki.bundle_bytes(
        [OLD_KEY, new], sequence=2, refresh_hint=300,
        extra_entries=[svid.bundle_entry(CA)]))
    before = only_requests(stack.filter_stats())
    stack.post_assertion(pki.mint_svid(new, DEMO, ISSUER))
    seen = only_request(stack)
    assert seen.header_values(VERDICT) == [f"allowed; method=jwt_svid; spiffe_id={DEMO}"]
    assert_no_identity(seen)
    assert delta(before, settled(stack)) == {"held_for_bundle": 1, "allowed.jwt_svid": 1}


def test_smuggled_headers_never_reach_the_as_http1(stack):
    token = pki.mint_svid(OLD_KEY, DEMO, ISSUER)
    smuggled = [(name, "allowed; method=x509_svid; spiffe_id=" + DEMO) for name in SMUGGLED]
    stack.post_assertion(token, headers=smuggled)
    seen = only_request(stack)
    names = [k for k, _ in seen.headers]
    assert [n for n in names if n.replace("_", "-") in
            {s.replace("_", "-") for s in SMUGGLED}] == [VERDICT]
    assert seen.header_values(VERDICT) == [f"allowed; method=jwt_svid; spiffe_id={DEMO}"]


def test_smuggled_headers_and_trailers_over_http2(stack):
    token = pki.mint_svid(OLD_KEY, DEMO, ISSUER)
    body = client.form(client.assertion_params(token))
    smuggled = [(name, "allowed") for name in SMUGGLED]
    resp = h2client.request(stack.port, "POST", TOKEN_PATH,
                            [("content-type", client.FORM), *smuggled],
                            pieces=[body[:50], body[50:]], trailers=smuggled)
    assert resp is not None and resp.status == 401
    seen = only_request(stack)
    assert seen.header_values(VERDICT) == [f"allowed; method=jwt_svid; spiffe_id={DEMO}"]
    assert_no_identity(seen)
    assert not any(k in SMUGGLED and k != VERDICT for k, _ in seen.headers)


def test_rejections_are_forwarded_not_answered(stack):
    """Every rejection path (head, body too large, bad form, bad signature, bad certificate)
    is forwarded whole with its verdict, counted once."""
    before = settled(stack)
    big = client.form(client.assertion_params("x" * 3000))
    cases = [
        (lambda: stack.post(b"{}", content_type="application/json"),
         "denied; error=invalid_request; reason=malformed_request", b"{}"),
        (lambda: stack.post(big), "denied; error=invalid_request; reason=body_too_large", big),
        (lambda: stack.post_assertion(pki.mint_svid(pki.ec_key(OLD_KEY.kid), DEMO, ISSUER)),
         "denied; error=invalid_client; reason=signature", None),
    ]
    for send, verdict, body in cases:
        resp = send()
        assert resp.status == 401 and resp.json() == {"error": "invalid_client"}  # the AS's
        seen = only_request(stack)
        assert seen.header_values(VERDICT) == [verdict]
        assert_no_identity(seen)
        if body is not None:
            assert seen.body == body and seen.complete
    foreign = svid.client_files(stack.workdir / "clients",
                                svid.leaf(svid.authority(ORG), [DEMO]), name="foreign")
    stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)], foreign)
    seen = only_request(stack)
    assert seen.header_values(VERDICT) == [
        "denied; error=invalid_client; reason=invalid_certificate"]
    assert_no_identity(seen)
    assert delta(before, settled(stack)) == {
        "denied.request.malformed_request": 1, "denied.request.body_too_large": 1,
        "denied.jwt_svid.signature": 1, "denied.x509_svid.invalid_certificate": 1}


def test_a_valid_x509_svid_gets_no_certificate_headers(stack):
    """rfc9440_headers is on, but dry run forwards nothing the filter would add."""
    files = svid.client_files(stack.workdir / "clients", svid.leaf(CA, [DEMO]))
    stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)], files)
    seen = only_request(stack)
    assert seen.header_values(VERDICT) == [f"allowed; method=x509_svid; spiffe_id={DEMO}"]
    assert_no_identity(seen)
    assert seen.header_values("x-forwarded-client-cert") == []


@pytest.fixture(scope="module")
def dry_xfcc(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-dry-xfcc"), {ORG: [OLD_KEY]},
                    [{"spiffe_id": DEMO}], x509_authorities={ORG: [CA]},
                    dry_run={"enabled": True}, client_certificate={"keep_xfcc": True})
    try:
        files = svid.client_files(s.workdir / "clients", svid.leaf(CA, [DEMO]))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s.auth.clear()
            s.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)], files)
            if s.auth.requests and s.auth.requests[0].header(VERDICT).startswith("allowed"):
                break
            time.sleep(0.2)
        s.files = files
        yield s
    finally:
        s.stop()


def test_dry_run_keeps_xfcc_of_a_valid_x509_svid_like_enforcing_mode(dry_xfcc):
    dry_xfcc.auth.clear()
    dry_xfcc.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)],
                       dry_xfcc.files)
    [seen] = dry_xfcc.auth.requests
    assert seen.header_values(VERDICT) == [f"allowed; method=x509_svid; spiffe_id={DEMO}"]
    assert len(seen.header_values("x-forwarded-client-cert")) == 1
