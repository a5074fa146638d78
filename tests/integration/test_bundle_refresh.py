"""Bundle refresh in Envoy (own Envoy, 1 s refresh): a rotated key is picked up on the next
refresh, failed fetches keep the last good bundle, and an empty `keys` array revokes.
BEP-3, BEP-5, BEP-6, BUN-2 in the requirements checklist; field case FC-18."""

from __future__ import annotations

import time

import pytest
from conftest import ISSUER, assert_invalid_client, assert_nothing_forwarded, start_stack

from harness import pki

ORG = "example.org"
DEMO = "spiffe://example.org/demo-client"
OLD_KEY, NEW_KEY = pki.ec_key("org-old"), pki.ec_key("org-new")
MOVED_KEY = pki.ec_key("org-moved")  # only in the bundle behind the redirect
HINT = 1  # seconds; min_refresh_seconds is 1 here so the hint is followed
MAX_BUNDLE_BYTES = 4096


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-bundle-refresh"),
        {ORG: [OLD_KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        bundle_refresh={"initial_delay_ms": 100, "default_refresh_seconds": 1,
                        "min_refresh_seconds": 1, "max_refresh_seconds": 60, "retry_seconds": 1, "max_retry_seconds": 1,
                        # fixed periods, so that fetches can be counted
                        "hint_fraction": 1, "jitter_fraction": 0},
        limits={"max_bundle_bytes": MAX_BUNDLE_BYTES},
    )
    s.bundles[ORG].set_response(body=pki.bundle_bytes([OLD_KEY], sequence=1, refresh_hint=HINT))
    try:
        assert s.wait_until_accepted(pki.mint_svid(OLD_KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def test_rotated_key_is_picked_up(stack):
    """BEP-3, BEP-5: the next refresh replaces the bundle; the old key stops verifying."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT))
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    stack.auth.clear()
    assert_invalid_client(stack.post_assertion(pki.mint_svid(OLD_KEY, DEMO, ISSUER)))
    assert_nothing_forwarded(stack)


@pytest.mark.parametrize(
    "status, body",
    [
        (500, b"internal error"),
        (404, b"not found"),
        (302, b""),
        (200, b"<html><body>maintenance</body></html>"),
        (200, b'{"keys":{"a":1}}'),
        (200, b'{"keys":[{"use":"jwt-svid"'),
        (200, b'{"keys":[],"spiffe_sequence":"3"}'),
        # Over limits.max_bundle_bytes (set to MAX_BUNDLE_BYTES here): a valid bundle, too big.
        (200, b'{"keys":[],"padding":"' + b"x" * MAX_BUNDLE_BYTES + b'"}'),
        # Over Envoy's callout response buffer: the host fails the call and hands the filter an
        # answer without headers (FC-17 b), which must not trap the VM.
        (200, b'{"keys":[' + b" " * (40 * 1024 * 1024) + b"]}"),
    ],
    ids=["500", "404", "302-without-location", "html", "keys-object", "truncated",
         "string-sequence", "over-max-bundle-bytes", "over-40MiB"],
)
def test_failed_fetch_keeps_last_good_bundle(stack, status, body):
    """BEP-6, FC-18: after a failed refresh the last good bundle still verifies."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT))
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    stack.bundles[ORG].set_response(body=body, status=status)
    stack.wait_for_bundle_hits(ORG, 2)
    resp = stack.post_assertion(pki.mint_svid(NEW_KEY, DEMO, ISSUER))
    assert resp.status == 200, (resp.status, resp.body)
    assert any("bundle fetch for example.org failed" in line for line in stack.envoy.filter_log_lines())
    assert_no_trap(stack)


def fetch_failures(stack) -> list[str]:
    return [line for line in stack.envoy.filter_log_lines() if "bundle fetch for example.org failed" in line]


def test_same_host_redirect_is_followed_and_not_remembered(stack):
    """BEP-9: a redirect to another path on the endpoint's own host (https, same cluster and
    certificate checks) is followed; every refresh starts again at the configured URL."""
    stack.bundles[ORG].serve_also("/v2/bundle.json",
                                  pki.bundle_bytes([NEW_KEY, MOVED_KEY], sequence=2, refresh_hint=HINT))
    stack.bundles[ORG].set_response(status=302, body=b"", location="/v2/bundle.json")
    try:
        configured_before = stack.bundles[ORG].hits
        moved_before = stack.bundles[ORG].hits_on("/v2/bundle.json")
        assert stack.wait_until_accepted(pki.mint_svid(MOVED_KEY, DEMO, ISSUER), timeout=10)
        stack.wait_for_bundle_hits(ORG, 2)
        assert stack.bundles[ORG].hits_on("/v2/bundle.json") >= moved_before + 2
        # Not remembered: each fetch asked the configured path first.
        assert stack.bundles[ORG].hits - configured_before >= stack.bundles[ORG].hits_on("/v2/bundle.json") - moved_before
        assert any('redirects to "/v2/bundle.json"; following it this time' in line
                   for line in stack.envoy.filter_log_lines())
    finally:
        stack.bundles[ORG].set_response(status=200, body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT))


@pytest.mark.parametrize(
    "location, why",
    [
        ("https://cdn.example.net/bundle.json", "another host"),
        ("http://bundle.example.org/bundle.json", "not https on the same host"),
        ("/bundle.json", "more than 3 redirects"),  # a loop
    ],
    ids=["other-host", "plain-http", "loop"],
)
def test_redirect_that_cannot_be_followed_keeps_last_good_bundle(stack, location, why):
    """BEP-9, BEP-6: a redirect off the configured host or scheme, or a loop, fails the fetch."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT), status=200)
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    failed_before = len(fetch_failures(stack))
    stack.bundles[ORG].set_response(status=301, body=b"", location=location)
    try:
        deadline = time.monotonic() + 10
        while len(fetch_failures(stack)) <= failed_before and time.monotonic() < deadline:
            time.sleep(0.1)
        failures = fetch_failures(stack)[failed_before:]
        assert failures and why in failures[0], failures
        resp = stack.post_assertion(pki.mint_svid(NEW_KEY, DEMO, ISSUER))
        assert resp.status == 200, (resp.status, resp.body)
    finally:
        stack.bundles[ORG].set_response(status=200, body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT))


def assert_no_trap(stack):
    """FC-17: no VM of this Envoy panicked or was reloaded."""
    log = stack.envoy.log_text()
    assert "panicked" not in log and "unreachable" not in log, log[-3000:]
    reloads = {k: v for k, v in stack.envoy.stats("vm_reload").items() if v != "0"}
    assert reloads == {}


def test_slow_endpoint_times_out_and_keeps_last_good_bundle(stack):
    """BEP-6, BEP-13: an endpoint slower than the callout timeout (2 s here) fails the fetch
    (Envoy answers 504) and the last good bundle stays in use."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT), status=200)
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    failed_before = len(fetch_failures(stack))
    stack.bundles[ORG].set_response(delay=3)
    try:
        deadline = time.monotonic() + 10
        while len(fetch_failures(stack)) <= failed_before and time.monotonic() < deadline:
            time.sleep(0.1)
        failures = fetch_failures(stack)[failed_before:]
        assert failures and "HTTP status 504" in failures[0], failures
        resp = stack.post_assertion(pki.mint_svid(NEW_KEY, DEMO, ISSUER))
        assert resp.status == 200, (resp.status, resp.body)
    finally:
        stack.bundles[ORG].set_response(delay=0)


def test_endpoint_down_keeps_last_good_bundle(stack):
    """BEP-6: connection refused on refresh → last good bundle kept."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT),
                                    status=200)
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    stack.bundles[ORG].stop()
    try:
        before = stack.envoy.counter("cluster.bundle_example_org.upstream_cx_connect_fail")
        deadline = time.monotonic() + 10
        while (stack.envoy.counter("cluster.bundle_example_org.upstream_cx_connect_fail") < before + 2
               and time.monotonic() < deadline):
            time.sleep(0.1)
        assert stack.envoy.counter("cluster.bundle_example_org.upstream_cx_connect_fail") >= before + 2
        resp = stack.post_assertion(pki.mint_svid(NEW_KEY, DEMO, ISSUER))
        assert resp.status == 200, (resp.status, resp.body)
    finally:
        stack.bundles[ORG].start()


def test_empty_keys_revokes(stack):
    """BUN-2: `{"keys":[]}` is a valid bundle that revokes every key (SPIFFE Trust Domain and
    Bundle §4.1.3; this departs from field case FC-18, which would keep the last good bundle).
    Runs last."""
    stack.bundles[ORG].set_response(body=pki.bundle_bytes([NEW_KEY], sequence=2, refresh_hint=HINT),
                                    status=200)
    assert stack.wait_until_accepted(pki.mint_svid(NEW_KEY, DEMO, ISSUER), timeout=10)
    stack.bundles[ORG].set_response(body=b'{"keys":[],"spiffe_sequence":3,"spiffe_refresh_hint":1}')
    stack.wait_for_bundle_hits(ORG, 2)
    stack.auth.clear()
    assert_invalid_client(stack.post_assertion(pki.mint_svid(NEW_KEY, DEMO, ISSUER)))
    assert_nothing_forwarded(stack)
