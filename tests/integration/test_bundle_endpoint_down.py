"""Bundle endpoint down at start (own Envoy): fail closed, other trust domains unaffected,
recovery once the endpoint answers. BEP-6, BEP-7, ERR-7 in the requirements checklist."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki

ORG, NET = "example.org", "example.net"
DEMO = "spiffe://example.org/demo-client"
NET_CLIENT = "spiffe://example.net/net-client"
ORG_KEY, NET_KEY = pki.ec_key("org-ec256"), pki.ec_key("net-ec256")
RETRY_SECONDS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-bundle-down"),
        {ORG: [ORG_KEY], NET: [NET_KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"},
         {"spiffe_id": NET_CLIENT, "client_id": "net-client"}],
        down=(ORG,),
        bundle_refresh={"initial_delay_ms": 200, "default_refresh_seconds": 300,
                        "min_refresh_seconds": 60, "max_refresh_seconds": 21600,
                        "retry_seconds": RETRY_SECONDS},
    )
    try:
        assert s.wait_until_accepted(pki.mint_svid(NET_KEY, NET_CLIENT, ISSUER)), (
            f"example.net bundle not loaded within 15 s:\n{s.envoy.log_tail(60)}")
        yield s
    finally:
        s.stop()


def test_fetch_was_attempted_and_failed(stack):
    """BEP-7 precondition: the filter tried the example.org bundle cluster and could not connect."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stack.envoy.counter("cluster.bundle_example_org.upstream_cx_connect_fail") >= 1:
            break
        time.sleep(0.2)
    assert stack.envoy.counter("cluster.bundle_example_org.upstream_cx_connect_fail") >= 1
    assert stack.bundles[ORG].hits == 0


def test_valid_assertion_rejected_while_no_bundle(stack):
    """BEP-7, ERR-7, FC-18 T2: no bundle yet → 401 invalid_client (not 5xx), nothing reaches the AS."""
    resp = stack.post_assertion(pki.mint_svid(ORG_KEY, DEMO, ISSUER))
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)


def test_other_trust_domain_unaffected(stack):
    """BEP-7: example.net's bundle loaded fine, so its clients authenticate."""
    resp = stack.post_assertion(pki.mint_svid(NET_KEY, NET_CLIENT, ISSUER))
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [NET_CLIENT]
    assert seen.header_values("x-oauth-client-id") == ["net-client"]


def test_recovers_when_endpoint_comes_up(stack):
    """BEP-6: failed fetches are retried (retry_seconds); once the endpoint answers, the
    trust domain works. Runs last in this module."""
    stack.bundles[ORG].start()
    assert stack.wait_until_accepted(pki.mint_svid(ORG_KEY, DEMO, ISSUER),
                                     timeout=RETRY_SECONDS * 3 + 5)
    assert stack.bundles[ORG].hits >= 1
