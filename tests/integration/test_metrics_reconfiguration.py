"""Metrics across a reconfiguration of a running Envoy (file-based LDS, same process): counts
are not reset, requests are counted once, and a trust domain that is no longer configured does
not keep reporting a usable bundle. Review 7.

Useful coverage (pass): counters survive a plugin configuration change and count every
request once. Regression of a defect: the removed trust domain's gauges stayed in /stats saying
usable 1 (refreshed by the draining old configuration, then never reset; now the plugin's root
contexts zero their gauges when they go)."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, plugin_config, start_stack

from harness import pki

ORG, OTHER = "example.org", "other.org"
ORG_CLIENT = {"spiffe_id": "spiffe://example.org/w"}
OTHER_CLIENT = {"spiffe_id": "spiffe://other.org/w"}
KEYS = {ORG: pki.ec_key("org-m"), OTHER: pki.ec_key("other-m")}
REFRESH = {"initial_delay_ms": 100, "retry_seconds": 1}
P = "wasmcustom.spiffe_oauth_filter"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("envoy-metrics-reconf"),
                    {ORG: [KEYS[ORG]], OTHER: [KEYS[OTHER]]}, [ORG_CLIENT, OTHER_CLIENT],
                    dynamic_listeners=True, concurrency=2, bundle_refresh=REFRESH,
                    drain_time_s=1)
    try:
        for td, c in ((ORG, ORG_CLIENT), (OTHER, OTHER_CLIENT)):
            assert s.wait_until_accepted(pki.mint_svid(KEYS[td], c["spiffe_id"], ISSUER))
        yield s
    finally:
        s.stop()


def test_counts_survive_a_reconfiguration(stack):
    token = pki.mint_svid(KEYS[ORG], ORG_CLIENT["spiffe_id"], ISSUER, lifetime=600)
    for _ in range(5):
        assert stack.post_assertion(token).status == 200
    before = stack.settled_filter_stats()
    assert before[f"{P}.allowed.jwt_svid"] >= 5
    stack.envoy.update_plugin_config(plugin_config([ORG, OTHER], [ORG_CLIENT, OTHER_CLIENT],
                                                   bundle_refresh=REFRESH, clock_skew_seconds=30))
    for _ in range(3):
        assert stack.post_assertion(token).status == 200
    after = stack.settled_filter_stats()
    assert after[f"{P}.allowed.jwt_svid"] == before[f"{P}.allowed.jwt_svid"] + 3


def test_a_removed_trust_domain_stops_reporting_a_usable_bundle(stack):
    assert stack.settled_filter_stats()[f"{P}.bundle.other_org.usable"] == 1
    stack.envoy.update_plugin_config(plugin_config([ORG], [ORG_CLIENT], bundle_refresh=REFRESH))
    # The old listener drains (1 s here; Envoy's --drain-time-s, 600 s by default, in
    # production): until then its root contexts still serve it and report its gauges.
    time.sleep(4)
    now = stack.settled_filter_stats()
    assert now.get(f"{P}.bundle.other_org.usable", 0) == 0, now
