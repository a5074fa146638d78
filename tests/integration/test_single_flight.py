"""One bundle fetch per trust domain per refresh period for the whole Envoy process (own Envoy
with 4 workers, so 5 VMs tick): a shared-data lease decides which VM fetches. BEP-12, FC-20."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, start_stack

from harness import pki

ORG, NET = "example.org", "example.net"
ORG_KEY, NET_KEY = pki.ec_key("org"), pki.ec_key("net")
PERIOD = 1  # refresh hint, seconds
WINDOW = 6  # seconds observed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-single-flight"), {ORG: [ORG_KEY], NET: [NET_KEY]},
        [{"spiffe_id": "spiffe://example.org/a"}, {"spiffe_id": "spiffe://example.net/b"}],
        concurrency=4,
        bundle_refresh={"initial_delay_ms": 100, "default_refresh_seconds": PERIOD,
                        "min_refresh_seconds": PERIOD, "max_refresh_seconds": 60,
                        "retry_seconds": 1, "max_retry_seconds": 1,
                        # fixed periods, so that fetches can be counted
                        "hint_fraction": 1, "jitter_fraction": 0},
    )
    for td, key in ((ORG, ORG_KEY), (NET, NET_KEY)):
        s.bundles[td].set_response(body=pki.bundle_bytes([key], sequence=1, refresh_hint=PERIOD))
    try:
        assert s.wait_until_accepted(pki.mint_svid(ORG_KEY, "spiffe://example.org/a", ISSUER))
        yield s
    finally:
        s.stop()


def test_one_fetch_per_trust_domain_per_period(stack):
    """Over several periods each endpoint sees about one request per period, not one per VM
    (5 VMs here: the main thread's and 4 workers')."""
    before = {td: stack.bundles[td].hits for td in (ORG, NET)}
    time.sleep(WINDOW)
    fetched = {td: stack.bundles[td].hits - before[td] for td in (ORG, NET)}
    print(f"fetches in {WINDOW}s with a {PERIOD}s refresh: {fetched}")
    for td, n in fetched.items():
        # Ticks are 1 s apart, so a period can stretch to ~2 s; never 5 VMs' worth.
        assert WINDOW // (2 * PERIOD) <= n <= WINDOW // PERIOD + 1, (td, n)
    # Every worker still authenticates from the one shared copy.
    for _ in range(20):
        resp = stack.post_assertion(pki.mint_svid(NET_KEY, "spiffe://example.net/b", ISSUER))
        assert resp.status == 200
