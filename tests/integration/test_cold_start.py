"""Cold start in Envoy: token requests that arrive before their trust domain's first bundle
wait for it (bounded) instead of failing; a trust domain whose endpoint is down or hangs at
start answers `invalid_client` once the wait is over, never hangs and never 5xx. BEP-7 in the
requirements checklist; issue "Trust bundle lifecycle" (cold start)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ISSUER, assert_invalid_client, start_stack

from harness import pki

ORG, NET, COM = "example.org", "example.net", "example.com"
ORG_KEY, NET_KEY, COM_KEY = pki.ec_key("org"), pki.ec_key("net"), pki.ec_key("com")
ORG_ID, NET_ID, COM_ID = ("spiffe://example.org/a", "spiffe://example.net/b",
                          "spiffe://example.com/c")
FIRST_FETCH_MS = 1500  # initial_delay_ms: requests sent right after start arrive before it
WAIT_MS = 2500
SLOW_SECONDS = 0.3  # example.org's endpoint answers this late


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-cold-start"),
        {ORG: [ORG_KEY], NET: [NET_KEY], COM: [COM_KEY]},
        [{"spiffe_id": ORG_ID}, {"spiffe_id": NET_ID}, {"spiffe_id": COM_ID}],
        down=(NET,),
        bundle_refresh={"initial_delay_ms": FIRST_FETCH_MS, "request_wait_ms": WAIT_MS,
                        "on_demand_min_interval_ms": 1000, "retry_seconds": 1,
                        "max_retry_seconds": 1},
    )
    s.bundles[ORG].set_response(delay=SLOW_SECONDS)
    # example.com accepts the connection and never answers within the callout timeout (2 s).
    s.bundles[COM].set_response(delay=30)
    try:
        yield s
    finally:
        s.stop()


def timed_post(stack, token):
    started = time.monotonic()
    resp = stack.post_assertion(token)
    return resp, time.monotonic() - started


def test_first_requests_wait_for_the_first_bundle(stack):
    """FC-20: five requests sent before the first fetch all succeed, with one fetch between them; and
    the unreachable trust domains answer invalid_client within the bounded wait."""
    org_token = pki.mint_svid(ORG_KEY, ORG_ID, ISSUER)
    net_token = pki.mint_svid(NET_KEY, NET_ID, ISSUER)
    com_token = pki.mint_svid(COM_KEY, COM_ID, ISSUER)
    assert stack.bundles[ORG].hits == 0
    with ThreadPoolExecutor(7) as pool:
        org = [pool.submit(timed_post, stack, org_token) for _ in range(5)]
        net = pool.submit(timed_post, stack, net_token)
        com = pool.submit(timed_post, stack, com_token)
        org_results = [f.result() for f in org]
        net_resp, net_elapsed = net.result()
        com_resp, com_elapsed = com.result()
    assert [r.status for r, _ in org_results] == [200] * 5, [(r.status, r.body) for r, _ in org_results]
    assert stack.bundles[ORG].hits == 1
    assert {r.header("x-spiffe-id") for r in stack.auth.requests} == {ORG_ID}
    # Endpoint down (connection refused): decided when the first fetch fails, not at once.
    assert_invalid_client(net_resp)
    assert net_elapsed < (FIRST_FETCH_MS + WAIT_MS) / 1000 + 1
    # Endpoint hanging: decided at the end of the wait, before the callout's own timeout.
    assert_invalid_client(com_resp)
    assert WAIT_MS / 1000 - 0.2 <= com_elapsed < WAIT_MS / 1000 + 1.5, com_elapsed
    lines = stack.envoy.filter_log_lines()
    assert any("no bundle fetched yet for the trust domain (SPIFFE ID spiffe://example.net/b)" in line
               for line in lines)


def test_later_requests_for_a_down_endpoint_are_bounded(stack):
    """After the cold start, a trust domain whose endpoint is still down keeps answering
    invalid_client, each within the bounded wait; the others are unaffected."""
    for _ in range(3):
        resp, elapsed = timed_post(stack, pki.mint_svid(NET_KEY, NET_ID, ISSUER))
        assert_invalid_client(resp)
        assert elapsed < WAIT_MS / 1000 + 1, elapsed
    resp = stack.post_assertion(pki.mint_svid(ORG_KEY, ORG_ID, ISSUER))
    assert resp.status == 200, (resp.status, resp.body)


def test_endpoint_back_up_is_used_by_the_next_request(stack):
    """The held-request path recovers too: once the endpoint is up, the next request waits for
    a fetch (rate-limited) and succeeds."""
    stack.bundles[NET].start()
    stack.bundles[NET].set_response(body=pki.bundle_bytes([NET_KEY], sequence=1, refresh_hint=300))
    assert stack.wait_until_accepted(pki.mint_svid(NET_KEY, NET_ID, ISSUER), timeout=10)
