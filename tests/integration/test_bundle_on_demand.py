"""Unknown `kid` in Envoy (two workers): a JWT-SVID naming a key its trust domain's bundle does
not have holds the request for one bundle refresh, shared by all requests and workers and
rate-limited per trust domain; the request is then decided once. JWT-11, BEP-3, BEP-12 in the
requirements checklist; issue "Trust bundle lifecycle" (unknown kid)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
OLD_KEY = pki.ec_key("org-1")
MIN_INTERVAL_MS = 2000
WAIT_MS = 3000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Periodic refresh far away (hint 300 s, floor 60 s): every fetch here is asked for.
    s = start_stack(
        tmp_path_factory.mktemp("envoy-on-demand"), {ORG: [OLD_KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        concurrency=2,
        bundle_refresh={"initial_delay_ms": 100, "on_demand_min_interval_ms": MIN_INTERVAL_MS,
                        "request_wait_ms": WAIT_MS},
    )
    try:
        assert s.wait_until_accepted(pki.mint_svid(OLD_KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def quiet_period(stack):
    """Wait out the rate limit of the last fetch, and let any answer settle."""
    time.sleep(MIN_INTERVAL_MS / 1000 + 0.3)


def publish(stack, keys, sequence):
    stack.bundles[ORG].set_response(body=pki.bundle_bytes(keys, sequence=sequence, refresh_hint=300))


def test_new_kid_is_fetched_once_and_the_request_succeeds(stack):
    """A signer that switched to a key published after the last fetch: its first request is
    held for one refresh and succeeds; eight concurrent requests on two workers share it."""
    quiet_period(stack)
    new_keys = [pki.ec_key("org-2"), pki.ec_key("org-3")]
    publish(stack, [OLD_KEY, *new_keys], sequence=2)
    before = stack.bundles[ORG].hits
    stack.auth.clear()
    resp = stack.post_assertion(pki.mint_svid(new_keys[0], DEMO, ISSUER))
    assert resp.status == 200, (resp.status, resp.body)
    assert stack.auth.requests[-1].header("x-spiffe-id") == DEMO
    time.sleep(0.5)
    assert stack.bundles[ORG].hits == before + 1

    quiet_period(stack)
    newest = pki.ec_key("org-4")
    publish(stack, [OLD_KEY, *new_keys, newest], sequence=3)
    before = stack.bundles[ORG].hits
    token = pki.mint_svid(newest, DEMO, ISSUER)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: stack.post_assertion(token).status, range(8)))
    assert statuses == [200] * 8
    time.sleep(0.5)
    assert stack.bundles[ORG].hits == before + 1, "one fetch for all requests and workers"


def test_known_kid_with_a_bad_signature_causes_no_fetch(stack):
    """Only a missing key can be cured by a refresh: a forgery under a known kid is rejected
    at once and fetches nothing."""
    quiet_period(stack)
    before = stack.bundles[ORG].hits
    forger = pki.ec_key("org-1")  # same kid as OLD_KEY, another key
    stack.auth.clear()
    started = time.monotonic()
    assert_invalid_client(stack.post_assertion(pki.mint_svid(forger, DEMO, ISSUER)))
    assert time.monotonic() - started < 1.0
    assert_nothing_forwarded(stack)
    time.sleep(0.3)
    assert stack.bundles[ORG].hits == before


def test_flood_of_unknown_kids_is_rate_limited(stack):
    """A flood of tokens naming keys that are never published: every one is rejected within the
    bounded wait, nothing reaches the AS, and the endpoint sees at most one fetch per
    on_demand_min_interval_ms (not one per request or per worker)."""
    quiet_period(stack)
    before = stack.bundles[ORG].hits
    stack.auth.clear()
    flood_seconds = 5.0
    tokens = [pki.mint_svid(pki.ec_key(f"bogus-{i}"), DEMO, ISSUER) for i in range(40)]

    def hammer(worker: int) -> list[tuple[int, float]]:
        seen = []
        deadline = time.monotonic() + flood_seconds
        i = worker
        while time.monotonic() < deadline:
            started = time.monotonic()
            resp = stack.post_assertion(tokens[i % len(tokens)])
            seen.append((resp.status, time.monotonic() - started, resp.json().get("error")))
            i += 4
        return seen

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(hammer, range(4)) for r in rs]
    fetches = stack.bundles[ORG].hits - before
    print(f"unknown-kid flood: {len(results)} requests in {flood_seconds}s, {fetches} fetches")
    assert len(results) >= 8
    assert {(status, error) for status, _, error in results} == {(401, "invalid_client")}
    assert max(elapsed for _, elapsed, _ in results) < WAIT_MS / 1000 + 1.0, "bounded wait"
    assert_nothing_forwarded(stack)
    # At most one fetch per interval over the flood (plus one in flight at its end).
    assert 1 <= fetches <= flood_seconds * 1000 // MIN_INTERVAL_MS + 2, fetches


def test_requests_never_override_the_failure_backoff(stack):
    """BEP-6: while the endpoint is failing, a flood of unknown kids does not make it be asked
    more often than the retry backoff (here 10 s after the failure): one failed fetch in 5 s."""
    quiet_period(stack)
    server = stack.bundles[ORG]
    server.set_response(status=503, body=b"unavailable")
    try:
        before = server.hits
        tokens = [pki.mint_svid(pki.ec_key(f"gone-{i}"), DEMO, ISSUER) for i in range(8)]
        deadline = time.monotonic() + 5
        with ThreadPoolExecutor(4) as pool:
            while time.monotonic() < deadline:
                statuses = set(pool.map(lambda t: stack.post_assertion(t).status, tokens))
                assert statuses == {401}
        assert server.hits - before == 1
        # The good key still works from the last good bundle.
        resp = stack.post_assertion(pki.mint_svid(OLD_KEY, DEMO, ISSUER))
        assert resp.status == 200, (resp.status, resp.body)
    finally:
        server.set_response(status=200, body=pki.bundle_bytes([OLD_KEY], sequence=9, refresh_hint=300))
