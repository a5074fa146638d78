"""Metrics in Envoy's /stats (exact counts after a known sequence of requests, two workers),
the rejection log line, and dry-run mode (every request forwarded unchanged with its verdict
in a header). Issue "Operating it for real": metrics, logs, dry-run."""

from __future__ import annotations

import re
import time

import pytest
from conftest import ISSUER, assert_invalid_client, assert_invalid_request, start_stack

from harness import pki, svid

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
KEY = pki.ec_key("org-metrics")
CA = svid.authority(ORG)
P = "wasmcustom.spiffe_oauth_filter"


def start(tmp_path_factory, name: str, **overrides):
    return start_stack(tmp_path_factory.mktemp(name), {ORG: [KEY]}, [{"spiffe_id": DEMO}],
                       x509_authorities={ORG: [CA]}, concurrency=2, **overrides)


def wait_for_stats(stack, want: dict[str, int], timeout: float = 5.0) -> dict[str, int]:
    """The filter's stats once every name in ``want`` has its value (counts are handed to
    Envoy on each VM's 100 ms timer)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = stack.filter_stats()
        if all(stats.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start(tmp_path_factory, "envoy-metrics")
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def test_counts_by_method_and_reason(stack):
    """After a known sequence of requests the counters say exactly what happened: allowed by
    method, denied by method and reason, passed through; every other series exists at 0."""
    before = stack.settled_filter_stats()
    token = pki.mint_svid(KEY, DEMO, ISSUER, lifetime=600)
    for _ in range(3):
        assert stack.post_assertion(token).status == 200
    assert_invalid_client(stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER, lifetime=-120)))
    assert_invalid_client(stack.post_assertion(pki.mint_svid(pki.ec_key(KEY.kid), DEMO, ISSUER)))
    assert_invalid_client(stack.post_assertion(pki.mint_svid(KEY, DEMO, "https://other.example")))
    assert_invalid_client(stack.post_assertion(
        pki.mint_svid(KEY, "spiffe://example.edu/w", ISSUER)))
    assert_invalid_request(stack.post(b"{}", content_type="application/json"))
    assert_invalid_request(stack.post_assertion(token, client_secret="s"))
    assert stack.post([("grant_type", "client_credentials"), ("client_id", "c"),
                       ("client_secret", "s")]).status == 401  # the AS's own answer
    files = svid.client_files(stack.workdir / "clients", svid.leaf(CA, [DEMO]))
    x509 = [("grant_type", "client_credentials"), ("client_id", DEMO)]
    assert stack.post_mtls(x509, files).status == 200
    foreign = svid.client_files(stack.workdir / "clients",
                                svid.leaf(svid.authority(ORG), [DEMO]), name="foreign")
    assert_invalid_client(stack.post_mtls(x509, foreign))
    added = {
        "allowed.jwt_svid": 3, "allowed.x509_svid": 1, "passed_through": 1,
        "denied.jwt_svid.expired": 1, "denied.jwt_svid.signature": 1,
        "denied.jwt_svid.audience": 1, "denied.jwt_svid.unknown_trust_domain": 1,
        "denied.request.malformed_request": 1, "denied.jwt_svid.mixed_methods": 1,
        "denied.x509_svid.invalid_certificate": 1,
    }
    want = {f"{P}.{k}": before.get(f"{P}.{k}", 0) + v for k, v in added.items()}
    stats = wait_for_stats(stack, want)
    request_counters = {k: v - before.get(k, 0) for k, v in stats.items()
                        if re.match(rf"^{re.escape(P)}\.(allowed|denied|passed_through|held)", k)}
    assert {k: v for k, v in request_counters.items() if v} == {
        f"{P}.{k}": v for k, v in added.items()}
    # Every reason of every method is defined, counted or not: 2 + 3 × 16 + passed + held.
    assert len(request_counters) == 2 + 3 * 16 + 2


def test_bundle_and_cache_metrics(stack):
    token = pki.mint_svid(KEY, DEMO, ISSUER, lifetime=600)
    before = stack.settled_filter_stats()
    for _ in range(4):
        assert stack.post_assertion(token).status == 200
    b = f"{P}.bundle.example_org"
    stats = stack.settled_filter_stats()
    assert stats[f"{b}.jwt_keys"] == 1
    assert stats[f"{b}.x509_authorities"] == 1
    assert stats[f"{b}.usable"] == 1
    assert stats[f"{b}.fetches_ok"] >= 1 and stats[f"{b}.fetches_failed"] == 0
    assert 0 <= stats[f"{b}.age_seconds"] < 600
    # Two workers: each verifies the token once at most; the rest are cache hits.
    hits = stats[f"{P}.credential_cache.hits"] - before[f"{P}.credential_cache.hits"]
    misses = stats[f"{P}.credential_cache.misses"] - before[f"{P}.credential_cache.misses"]
    assert hits + misses == 4 and misses <= 2, (hits, misses)


def test_rejection_log_line_names_reason_and_id_never_the_token(stack):
    token = pki.mint_svid(KEY, DEMO, ISSUER, lifetime=-120)
    assert_invalid_client(stack.post_assertion(token))
    time.sleep(0.2)
    lines = [line for line in stack.envoy.log_text().splitlines()
             if "rejected with invalid_client (expired)" in line]
    assert lines and f"(SPIFFE ID {DEMO})" in lines[-1], lines[-3:]
    assert token.split(".")[2] not in stack.envoy.log_text()


def test_client_sent_verdict_header_never_reaches_the_as(stack):
    stack.post([("grant_type", "client_credentials"), ("client_id", "c")],
               headers=[("x-spiffe-oauth-verdict", "allowed"), ("x_spiffe_oauth_verdict", "x")])
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-oauth-verdict") == []
    assert seen.header_values("x_spiffe_oauth_verdict") == []


# ------------------------------------------------------------------------- dry run


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    s = start(tmp_path_factory, "envoy-dry-run", dry_run={"enabled": True})
    try:
        # The AS never sees an identity in dry run: wait for the verdict instead.
        token = pki.mint_svid(KEY, DEMO, ISSUER)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s.auth.clear()
            s.post_assertion(token)
            if s.auth.requests[0].header_values("x-spiffe-oauth-verdict")[0].startswith("allowed"):
                break
            time.sleep(0.2)
        s.auth.clear()
        yield s
    finally:
        s.stop()


def seen_by_as(dry) -> tuple[list[str], list[str]]:
    [seen] = dry.auth.requests
    dry.auth.clear()
    return seen.header_values("x-spiffe-oauth-verdict"), seen.header_values("x-spiffe-id")


def test_dry_run_forwards_everything_with_its_verdict(dry):
    """Valid, forged and malformed requests all reach the AS unchanged (no identity headers),
    each with the verdict the filter would have enforced; the counters count as usual."""
    before = dry.settled_filter_stats()
    assert dry.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER)).status == 401  # the AS's own
    assert seen_by_as(dry) == ([f"allowed; method=jwt_svid; spiffe_id={DEMO}"], [])
    forged = pki.mint_svid(pki.ec_key(KEY.kid), DEMO, ISSUER)
    assert dry.post_assertion(forged).status == 401  # the AS's own answer: it saw no identity
    assert seen_by_as(dry) == (["denied; error=invalid_client; reason=signature"], [])
    assert dry.post(b"{}", content_type="application/json").status == 401
    assert seen_by_as(dry) == (["denied; error=invalid_request; reason=malformed_request"], [])
    dry.post([("grant_type", "client_credentials"), ("client_id", "c")],
             headers=[("x-spiffe-oauth-verdict", "allowed")])
    assert seen_by_as(dry) == (["passed_through"], [])
    want = {f"{P}.{k}": before[f"{P}.{k}"] + 1 for k in (
        "allowed.jwt_svid", "denied.jwt_svid.signature", "denied.request.malformed_request",
        "passed_through")}
    stats = wait_for_stats(dry, want)
    assert {k: stats[k] for k in want} == want
    log = dry.envoy.log_text()
    assert "would be rejected (dry run: forwarded) with invalid_client (signature)" in log
    assert "dry run: every request is forwarded unchanged" in log
