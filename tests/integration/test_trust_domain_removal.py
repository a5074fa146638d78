"""Removing a trust domain from the configuration of a running Envoy (BEP-11): its JWT-SVIDs
are rejected at once while the other trust domain keeps working, and re-adding it brings it
back. One Envoy whose listeners come from file-based LDS, so each configuration change is an
in-place listener update of the same process and proxy-wasm shared data survives it.

The configuration refuses clients of trust domains it does not configure, so other.org's client
is removed with its trust domain; the rejection's log line shows that the trust domain, not the
client registry, refused it. The bundle clusters of both trust domains stay defined throughout.
"""

from __future__ import annotations

import time

import pytest
from conftest import (ISSUER, assert_invalid_client, assert_nothing_forwarded, plugin_config,
                      start_stack)

from harness import client, pki

ORG, OTHER = "example.org", "other.org"
ORG_CLIENT = {"spiffe_id": "spiffe://example.org/org-client", "client_id": "org-client"}
OTHER_CLIENT = {"spiffe_id": "spiffe://other.org/other-client", "client_id": "other-client"}
KEYS = {ORG: pki.ec_key("org-ec256"), OTHER: pki.ec_key("other-ec256")}
CLIENTS = {ORG: ORG_CLIENT, OTHER: OTHER_CLIENT}
# Bundles carry a 300 s refresh hint: any fetch seen during the test is a (re)start fetch.
REFRESH = {"initial_delay_ms": 100, "retry_seconds": 1}


def config(*trust_domains: str) -> dict:
    return plugin_config(list(trust_domains), [CLIENTS[td] for td in trust_domains],
                         bundle_refresh=REFRESH)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-td-removal"),
        {ORG: [KEYS[ORG]], OTHER: [KEYS[OTHER]]},
        [ORG_CLIENT, OTHER_CLIENT],
        dynamic_listeners=True,
        bundle_refresh=REFRESH,
    )
    try:
        assert s.envoy.plugin_config == config(ORG, OTHER)
        for td in (ORG, OTHER):
            assert s.wait_until_accepted(svid(td)), (
                f"bundle of {td} not loaded within 15 s:\n{s.envoy.log_tail(60)}")
        yield s
    finally:
        s.stop()


def svid(trust_domain: str) -> str:
    return pki.mint_svid(KEYS[trust_domain], CLIENTS[trust_domain]["spiffe_id"], ISSUER)


def reconfigure(stack, *trust_domains: str) -> int:
    """Applies the configuration of ``trust_domains``; returns the log offset before it."""
    offset = stack.envoy.log_size()
    stack.envoy.update_plugin_config(config(*trust_domains))
    return offset


def assert_accepted(stack, trust_domain: str, mtls: bool = False):
    """A valid SVID of ``trust_domain`` (over the TLS listener with ``mtls``, presenting no
    certificate) gets 200 from the AS, which saw the identity headers of its client."""
    stack.auth.clear()
    params = client.assertion_params(svid(trust_domain))
    resp = stack.post_mtls(params) if mtls else stack.post(params)
    assert resp.status == 200, (resp.status, resp.body)
    assert resp.json()["client_id"] == CLIENTS[trust_domain]["client_id"]
    assert len(stack.auth.requests) == 1
    seen = stack.auth.requests[0]
    assert seen.header_values("x-spiffe-id") == [CLIENTS[trust_domain]["spiffe_id"]]
    assert seen.header_values("x-oauth-client-id") == [CLIENTS[trust_domain]["client_id"]]
    stack.auth.clear()


def assert_listeners_updated(stack, offset: int, trust_domains: int):
    """Envoy's log shows both listeners updated by LDS, and the config dump serves the filter
    the new configuration on each."""
    log = stack.envoy.log_since(offset)
    for name in ("token_listener", "token_listener_mtls"):
        assert f"lds: add/update listener '{name}'" in log, log[-3000:]
    served = stack.envoy.served_plugin_configs()
    assert sorted(served) == ["token_listener", "token_listener_mtls"]
    for configs in served.values():
        assert [len(c["trust_domains"]) for c in configs] == [trust_domains]


def test_removed_trust_domain_rejected_at_once(stack):
    """BEP-11: without other.org in the configuration, its valid SVID gets 401 invalid_client
    on the next request, on both listeners, and nothing reaches the AS; example.org keeps
    working from its bundle in shared data, not fetched again (BEP-12)."""
    reconfigure(stack, ORG, OTHER)
    for td in (ORG, OTHER):
        assert_accepted(stack, td)
    org_hits = stack.bundles[ORG].hits

    offset = reconfigure(stack, ORG)
    assert_invalid_client(stack.post_assertion(svid(OTHER)))
    assert_invalid_client(stack.post_mtls(client.assertion_params(svid(OTHER))))
    assert_nothing_forwarded(stack)
    assert_accepted(stack, ORG)
    assert_accepted(stack, ORG, mtls=True)

    assert_listeners_updated(stack, offset, trust_domains=1)
    lines = stack.envoy.filter_log_lines(offset)
    assert any("configured: issuer https://as.example.com, token paths [\"/token\"], "
               "1 trust domain(s), 1 client(s)" in l for l in lines), lines
    rejected = [l for l in lines if "rejected with invalid_client" in l]
    assert len(rejected) == 2, lines
    assert all("trust domain of the SPIFFE ID is not configured (SPIFFE ID "
               f"{OTHER_CLIENT['spiffe_id']})" in l for l in rejected), rejected

    # The new root context has ticked by now (100 ms initial delay, then 1 s ticks): it took
    # example.org's bundle and schedule from shared data instead of fetching at start.
    time.sleep(1.3)
    assert_accepted(stack, ORG)
    assert stack.bundles[ORG].hits == org_hits
    assert not [l for l in stack.envoy.filter_log_lines(offset) if "bundle of example.org" in l]


def test_readded_trust_domain_accepted_again(stack):
    """BEP-11: once other.org is configured again its SVIDs are accepted again, on both
    listeners (as soon as its bundle is available); example.org is unaffected throughout."""
    reconfigure(stack, ORG)
    assert_invalid_client(stack.post_assertion(svid(OTHER)))
    assert_nothing_forwarded(stack)

    offset = reconfigure(stack, ORG, OTHER)
    assert_listeners_updated(stack, offset, trust_domains=2)
    assert stack.wait_until_accepted(svid(OTHER), timeout=10), stack.envoy.log_tail(60)
    assert_accepted(stack, OTHER)
    assert_accepted(stack, OTHER, mtls=True)
    assert_accepted(stack, ORG)
