"""Sequence guard and bounded staleness in Envoy (own Envoy, 1 s refresh, 5 s maximum
staleness): a bundle with a lower `spiffe_sequence` is not applied, and a last good bundle older
than `max_staleness_seconds` stops authenticating until a fresh fetch. BEP-5, BEP-8."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
KEY_A, KEY_B = pki.ec_key("org-a"), pki.ec_key("org-b")
MAX_STALENESS = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-staleness"), {ORG: [KEY_A]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        bundle_refresh={"initial_delay_ms": 100, "default_refresh_seconds": 1,
                        "min_refresh_seconds": 1, "max_refresh_seconds": 2, "retry_seconds": 1, "max_retry_seconds": 1,
                        # fixed periods, so that fetches can be counted
                        "hint_fraction": 1, "jitter_fraction": 0,
                        "max_staleness_seconds": MAX_STALENESS},
    )
    s.bundles[ORG].set_response(body=pki.bundle_bytes([KEY_A], sequence=5, refresh_hint=1))
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY_A, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def test_lower_sequence_is_not_applied(stack):
    """BEP-5: sequence 4 after 5 → kept 5 (key A still verifies, key B does not). (The age of
    the bundle in use keeps growing meanwhile: a rollback does not refresh it.)"""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([KEY_B], sequence=4, refresh_hint=1), status=200)
    stack.wait_for_bundle_hits(ORG, 1)
    time.sleep(0.2)
    assert stack.post_assertion(pki.mint_svid(KEY_A, DEMO, ISSUER)).status == 200
    stack.auth.clear()
    assert_invalid_client(stack.post_assertion(pki.mint_svid(KEY_B, DEMO, ISSUER)))
    assert_nothing_forwarded(stack)
    assert any("not applied" in line and "spiffe_sequence 4" in line
               for line in stack.envoy.filter_log_lines())
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([KEY_A], sequence=5, refresh_hint=1))


def test_stale_bundle_stops_authenticating_until_refreshed(stack):
    """BEP-8: the endpoint fails for longer than the maximum staleness → rejected, with the
    reason in the log; a good fetch restores it."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([KEY_A], sequence=6, refresh_hint=1), status=200)
    assert stack.wait_until_accepted(pki.mint_svid(KEY_A, DEMO, ISSUER))
    stack.bundles[ORG].set_response(status=500)
    time.sleep(MAX_STALENESS + 1.5)
    stack.auth.clear()
    offset = stack.envoy.log_size()
    assert_invalid_client(stack.post_assertion(pki.mint_svid(KEY_A, DEMO, ISSUER)))
    assert_nothing_forwarded(stack)
    assert any("over bundle_refresh.max_staleness_seconds" in line
               for line in stack.envoy.filter_log_lines(offset))
    # The bundle event says so too, not only the rejected requests.
    assert any("bundle fetch for example.org failed" in line
               and "is over bundle_refresh.max_staleness_seconds: its SVIDs are rejected" in line
               for line in stack.envoy.filter_log_lines())
    stack.bundles[ORG].set_response(status=200)
    assert stack.wait_until_accepted(pki.mint_svid(KEY_A, DEMO, ISSUER), timeout=10)
