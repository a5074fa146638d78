"""The verified-credential cache in Envoy (two workers, 1 s refresh): a JWT-SVID or an
X509-SVID chain presented again is answered from each VM's cache, and a key removed from the
trust domain's bundle, a revoking empty bundle or an authority rotated out takes effect for the
cached credential at the next bundle change, on every worker. BEP-5, BUN-2, JWT-11, X509-1 in
the requirements checklist; issue "Performance" (verified-credential cache)."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki, svid

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
KEY_1, KEY_2 = pki.ec_key("org-1"), pki.ec_key("org-2")
CA_1, CA_2 = svid.authority(ORG), svid.authority(ORG)
HINT = 1
ROUNDS = 8  # requests per check: with two workers, both VMs see the credential


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-credential-cache"), {ORG: [KEY_1]},
        [{"spiffe_id": DEMO}], x509_authorities={ORG: [CA_1]}, concurrency=2,
        bundle_refresh={"initial_delay_ms": 100, "default_refresh_seconds": HINT,
                        "min_refresh_seconds": HINT, "hint_fraction": 1, "jitter_fraction": 0,
                        "retry_seconds": 1, "max_retry_seconds": 1},
    )
    # Before the first fetch (Envoy is still starting): the short hint that drives refreshes.
    s.bundles[ORG].set_response(body=pki.bundle_bytes(
        [KEY_1], sequence=1, refresh_hint=HINT, extra_entries=[svid.bundle_entry(CA_1)]))
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY_1, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def publish(stack, keys, sequence, authorities=()):
    stack.bundles[ORG].set_response(body=pki.bundle_bytes(
        keys, sequence=sequence, refresh_hint=HINT,
        extra_entries=[svid.bundle_entry(ca) for ca in authorities]))
    # The second fetch from now was asked for after the change; give its answer time to land.
    stack.wait_for_bundle_hits(ORG, 2)
    time.sleep(0.3)


def all_statuses(send) -> set[int]:
    return {send().status for _ in range(ROUNDS)}


def test_removed_key_takes_effect_for_a_cached_jwt_svid(stack):
    token = pki.mint_svid(KEY_1, DEMO, ISSUER, lifetime=600)
    assert all_statuses(lambda: stack.post_assertion(token)) == {200}
    publish(stack, [KEY_2], sequence=2, authorities=[CA_1])
    stack.auth.clear()
    for _ in range(ROUNDS):
        assert_invalid_client(stack.post_assertion(token))
    assert_nothing_forwarded(stack)
    # The new key's tokens are accepted and cached in turn.
    fresh = pki.mint_svid(KEY_2, DEMO, ISSUER, lifetime=600)
    assert all_statuses(lambda: stack.post_assertion(fresh)) == {200}


def test_revoking_bundle_takes_effect_for_a_cached_jwt_svid(stack):
    publish(stack, [KEY_2], sequence=3, authorities=[CA_1])
    token = pki.mint_svid(KEY_2, DEMO, ISSUER, lifetime=600)
    assert all_statuses(lambda: stack.post_assertion(token)) == {200}
    publish(stack, [], sequence=4, authorities=[CA_1])
    stack.auth.clear()
    for _ in range(ROUNDS):
        assert_invalid_client(stack.post_assertion(token))
    assert_nothing_forwarded(stack)


def test_rotated_out_authority_takes_effect_for_a_cached_chain(stack):
    publish(stack, [KEY_2], sequence=5, authorities=[CA_1])
    leaf = svid.leaf(CA_1, [DEMO])
    files = svid.client_files(stack.workdir / "clients", leaf)
    params = [("grant_type", "client_credentials"), ("client_id", DEMO)]
    assert all_statuses(lambda: stack.post_mtls(params, files)) == {200}
    publish(stack, [KEY_2], sequence=6, authorities=[CA_2])
    stack.auth.clear()
    for _ in range(ROUNDS):
        assert_invalid_client(stack.post_mtls(params, files))
    assert_nothing_forwarded(stack)


def test_an_expired_cached_jwt_svid_is_refused(stack):
    """exp plus clock_skew_seconds (60 here) bounds a cached verdict like a fresh one: a token
    that expired 55 s ago is accepted (within the leeway) and, cached, refused once the leeway
    is over."""
    publish(stack, [KEY_2], sequence=7, authorities=[CA_1])
    now = int(time.time())
    token = pki.mint_svid(KEY_2, DEMO, ISSUER, lifetime=60, now=now - 115)
    assert all_statuses(lambda: stack.post_assertion(token)) == {200}
    time.sleep(max(0.0, now + 5.5 - time.time()))
    stack.auth.clear()
    for _ in range(ROUNDS):
        assert_invalid_client(stack.post_assertion(token))
    assert_nothing_forwarded(stack)
