"""Key rotation under continuous load in Envoy (two workers, 1 s refresh): the trust domain
publishes a new key beside the old one, the workload switches to it, the old key is removed.
No valid request is rejected at any point, and tokens signed with the removed key are rejected
after the next refresh. BEP-3, BEP-5, BEP-12, JWT-11 in the requirements checklist."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
OLD_KEY, NEW_KEY = pki.ec_key("org-old"), pki.ec_key("org-new")
HINT = 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-rotation"), {ORG: [OLD_KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        concurrency=2,
        bundle_refresh={"initial_delay_ms": 100, "min_refresh_seconds": 1,
                        "default_refresh_seconds": 1, "hint_fraction": 1, "jitter_fraction": 0,
                        # Only the periodic refresh may carry the rotation here.
                        "on_demand_min_interval_ms": 3_600_000},
    )
    s.bundles[ORG].set_response(body=pki.bundle_bytes([OLD_KEY], sequence=1, refresh_hint=HINT))
    try:
        assert s.wait_until_accepted(pki.mint_svid(OLD_KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


class Load:
    """Three client threads posting the current signer's token until stopped."""

    def __init__(self, stack, token: str):
        self.stack = stack
        self.token = token
        self.results: list[tuple[str, int]] = []  # (signer, status)
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self, signer_of: dict[str, str]):
        while not self.stop.is_set():
            token = self.token
            status = self.stack.post_assertion(token).status
            with self.lock:
                self.results.append((signer_of[token], status))


def test_rotation_rejects_no_valid_request(stack):
    old_token = pki.mint_svid(OLD_KEY, DEMO, ISSUER, lifetime=600)
    new_token = pki.mint_svid(NEW_KEY, DEMO, ISSUER, lifetime=600)
    signer_of = {old_token: "old", new_token: "new"}
    load = Load(stack, old_token)
    server = stack.bundles[ORG]
    with ThreadPoolExecutor(3) as pool:
        runners = [pool.submit(load.run, signer_of) for _ in range(3)]
        try:
            time.sleep(1)
            # 1. The new key is published beside the old one; wait for two refreshes.
            server.set_response(body=pki.bundle_bytes([OLD_KEY, NEW_KEY], sequence=2, refresh_hint=HINT))
            stack.wait_for_bundle_hits(ORG, 2)
            time.sleep(0.3)
            # 2. The workload switches to the new key.
            load.token = new_token
            time.sleep(1.5)
            # 3. The old key is removed.
            server.set_response(body=pki.bundle_bytes([NEW_KEY], sequence=3, refresh_hint=HINT))
            stack.wait_for_bundle_hits(ORG, 2)
            time.sleep(1)
        finally:
            load.stop.set()
            for r in runners:
                r.result()
    by_signer = {s: [st for sig, st in load.results if sig == s] for s in ("old", "new")}
    assert len(by_signer["old"]) >= 10 and len(by_signer["new"]) >= 10, {k: len(v) for k, v in by_signer.items()}
    rejected = [r for r in load.results if r[1] != 200]
    assert rejected == [], f"{len(rejected)} of {len(load.results)} valid requests rejected"
    # The removed key no longer verifies (both workers read the same shared bundle).
    stack.auth.clear()
    for _ in range(4):
        assert_invalid_client(stack.post_assertion(old_token))
    assert_nothing_forwarded(stack)
