"""Field cases about the host (../shared/research/field-cases.md), through Envoy: bodies in
chunks (FC-14), VM failure modes and fail-closed (FC-17), key sources never taken from a token
(FC-09), bundle fetch failures (FC-18), cold start with several workers (FC-20), identity
header hygiene (FC-21), a DNS-only or two-SAN client certificate (FC-23), oversized tokens
(FC-29). Besides its exact verdict, every test asserts that no response was a 5xx and that no
VM trapped or was reloaded. The parsing and validation sub-inputs are unit tests
(src/authenticator/tests/field_cases.rs); the cases other modules cover already are listed in
the README's field-case table."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import (ISSUER, TOKEN_PATH, assert_invalid_client, assert_nothing_forwarded,
                      cluster_name, plugin_config, start_stack)

from harness import client, h2client, pki, svid
from harness.envoy import Envoy
from harness.servers import HOST, TokenEndpoint

ORG = "example.org"
GHOST = "ghost.example"  # configured, but its bundle cluster does not exist in Envoy (FC-17 e)
DEMO = "spiffe://example.org/demo-client"
BATCH = "spiffe://example.org/workloads/batch"
KEY, ATTACKER = pki.ec_key("org-ec256"), pki.ec_key("org-ec256")  # same kid, other key
ORG_CA = svid.authority(ORG)


def trust_domain(td: str, cluster: str) -> dict:
    return {"bundle_endpoint": {"cluster": cluster, "authority": f"bundle.{td}",
                                "path": "/bundle.json", "timeout_ms": 2000}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-field-cases"), {ORG: [KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"},
         {"spiffe_id": "spiffe://example.org/workloads/*"},
         {"spiffe_id": f"spiffe://{GHOST}/client"}],
        x509_authorities={ORG: [ORG_CA]}, concurrency=2,
        replace={"trust_domains": {ORG: trust_domain(ORG, cluster_name(ORG)),
                                   GHOST: trust_domain(GHOST, "bundle_no_such_cluster")}},
        bundle_refresh={"request_wait_ms": 500, "on_demand_min_interval_ms": 1000})
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


# ------------------------------------------------------------------ helpers


def assert_healthy(stack):
    """No VM trapped, panicked, failed or was reloaded, and a good request still authenticates."""
    log = stack.envoy.log_text()
    assert "panicked" not in log and "unreachable" not in log, log[-3000:]
    # Envoy's own wasm stats (the filter's metrics, under wasmcustom., count requests).
    bad = {k: v for k, v in stack.envoy.stats("wasm").items()
           if not k.startswith("wasmcustom.")
           and any(w in k for w in ("reload", "fail", "crash", "abort")) and v not in ("0", "")}
    assert bad == {}, bad
    stack.auth.clear()
    resp = stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER))
    assert resp.status == 200, (resp.status, resp.body)
    stack.auth.clear()


def assert_no_5xx(*responses):
    for resp in responses:
        assert resp is not None, "no response"
        assert resp.status < 500, (resp.status, resp.body)


def assert_authenticated(resp, stack, spiffe_id=DEMO, client_id="demo-client"):
    assert_no_5xx(resp)
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = stack.auth.requests
    assert seen.header_values("x-spiffe-id") == [spiffe_id]
    assert seen.header_values("x-oauth-client-id") == [client_id]
    return seen


def form_body(assertion: str, **extra) -> bytes:
    return client.form(client.assertion_params(assertion, **extra))


def raw_http1(port: int, head: bytes, body: bytes, timeout: float = 10.0) -> client.Response:
    """A request written byte for byte (header values Python's clients would refuse)."""
    import http.client
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        return client.Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], resp.read())
    finally:
        sock.close()


def bundle_cluster_requests(stack) -> dict[str, str]:
    return {k: v for k, v in stack.envoy.stats(r"^cluster\.bundle_.*\.upstream_rq_total$").items()}


# ------------------------------------------------------------------ FC-14


def test_fc_14_http1_chunks_split_inside_the_assertion(stack):
    """FC-14: Transfer-Encoding: chunked, three chunks split after `client_assertion=eyJhbGciOiJFUz`
    and after the token's second `.` → accepted, like the single-piece request."""
    token = pki.mint_svid(KEY, DEMO, ISSUER)
    body = form_body(token)
    first = body.index(b"client_assertion=") + len(b"client_assertion=eyJhbGciOiJFUz")
    second = body.index(b".", body.index(b".", body.index(b"client_assertion=")) + 1) + 1
    pieces = [body[:first], body[first:second], body[second:]]
    assert b"".join(pieces) == body and all(pieces)
    resp = client.post_in_pieces(stack.port, TOKEN_PATH, pieces, chunked=True, delay=0.1)
    assert_authenticated(resp, stack)
    assert_healthy(stack)


def test_fc_14_http2_three_frames_and_one_byte_frames(stack):
    """FC-14: over HTTP/2, three DATA frames split inside the assertion, one-byte DATA frames,
    and a request that ends with a trailers frame → accepted each time."""
    token = pki.mint_svid(KEY, DEMO, ISSUER)
    body = form_body(token)
    cut = body.index(b"client_assertion=") + 30
    shapes = [
        ([body[:cut], body[cut:cut + 40], body[cut + 40:]], None),
        ([body[i:i + 1] for i in range(len(body))], None),
        ([body[:cut], body[cut:]], [("x-checksum", "1")]),
    ]
    for pieces, trailers in shapes:
        stack.auth.clear()
        resp = h2client.request(stack.port, "POST", TOKEN_PATH, [("content-type", client.FORM)],
                                pieces, trailers=trailers, timeout=30)
        assert_authenticated(resp, stack)
    assert_healthy(stack)


# ------------------------------------------------------------------ FC-17


def test_fc_17_c_invalid_utf8_request_header(stack):
    """FC-17 c: a request header `x-test: \\xff\\xfe` does not trap the VM; the request is
    decided on its merits (a good assertion is accepted, a forged one refused)."""
    head = (b"POST /token HTTP/1.1\r\nHost: as.example.com\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nx-test: \xff\xfe\r\n")
    resp = raw_http1(stack.port, head, form_body(pki.mint_svid(KEY, DEMO, ISSUER)))
    assert_no_5xx(resp)
    assert_authenticated(resp, stack)
    stack.auth.clear()
    resp = raw_http1(stack.port, head, form_body(pki.mint_svid(ATTACKER, DEMO, ISSUER)))
    assert_no_5xx(resp)
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)
    assert_healthy(stack)


def test_fc_17_d_kid_that_is_an_object(stack):
    """FC-17 d: a token header `{"alg":"ES256","kid":{"a":1}}` → 401 invalid_client, no trap."""
    header = pki.b64url_json({"alg": "ES256", "kid": {"a": 1}})
    payload = pki.b64url_json(pki.svid_claims(DEMO, ISSUER))
    token = pki.sign_compact(header, payload, KEY, "ES256")
    resp = stack.post_assertion(token)
    assert_no_5xx(resp)
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)
    assert_healthy(stack)


def test_fc_17_e_bundle_cluster_missing_fails_closed(stack):
    """FC-17 e: a trust domain whose bundle cluster is not in Envoy's configuration, so every
    dispatch_http_call fails: its SVIDs get 401 invalid_client (fail closed), nothing traps,
    and the other trust domain keeps working."""
    ghost_key = pki.ec_key("ghost-k1")
    for _ in range(3):
        resp = stack.post_assertion(pki.mint_svid(ghost_key, f"spiffe://{GHOST}/client", ISSUER))
        assert_no_5xx(resp)
        assert_invalid_client(resp)
        assert_nothing_forwarded(stack)
    assert_healthy(stack)


def test_fc_17_a_module_that_does_not_load_never_serves_a_200(tmp_path):
    """FC-17 a: the deployment is FAIL_RELOAD, never fail-open: a wasm module that cannot be
    loaded makes Envoy refuse the configuration (observed with Envoy 1.40: it exits; were it to
    serve, /token must be a 500/503), so /token is never answered 200 and nothing reaches the
    AS."""
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0 this is not a module")
    tls = pki.write_tls_pki(tmp_path / "pki", ["bundle.example.org"])
    config = plugin_config([ORG], [{"spiffe_id": DEMO}])
    with TokenEndpoint().start() as auth:
        envoy = Envoy(tmp_path, config, wasm_path=broken, ca_file=tls.ca_cert,
                      as_port=auth.port, bundle_ports={ORG: 1})
        try:
            envoy.start(timeout=20)
        except RuntimeError:
            started = False
        else:
            started = True
        try:
            if started:
                resp = client.post_form(envoy.listener_port, TOKEN_PATH,
                                        client.assertion_params("a.b.c"))
                assert resp.status != 200 and resp.status in (500, 503), resp.status
        finally:
            envoy.stop()
        assert auth.requests == []


# ------------------------------------------------------------------ FC-09


def test_fc_09_token_naming_keys_elsewhere_makes_no_outbound_call(stack):
    """FC-09: a token for an unconfigured trust domain with an attacker `iss` and a `jku` (to
    the metadata service) → 401 invalid_client, and no bundle cluster sees a request for it."""
    time.sleep(1.5)  # let any fetch of the previous tests settle
    before_hits = stack.bundles[ORG].hits
    before = bundle_cluster_requests(stack)
    attacker = pki.ec_key("z")
    claims = {"sub": "spiffe://unconfigured.example.net/x", "iss": "https://attacker.example.net",
              "aud": [ISSUER], "exp": int(time.time()) + 300}
    for header in ({"alg": "ES256", "kid": "z", "jku": "https://169.254.169.254/latest/meta-data/"},
                   {"alg": "ES256", "kid": "z"}):
        resp = stack.post_assertion(pki.mint_jwt(header, claims, attacker))
        assert_no_5xx(resp)
        assert_invalid_client(resp)
        assert_nothing_forwarded(stack)
    # The X.509 variant: a certificate of a CA nobody configured → refused, nothing fetched.
    foreign = svid.leaf(svid.authority(ORG), [DEMO])
    files = svid.client_files(stack.workdir / "clients", foreign)
    resp = stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)], files)
    assert_no_5xx(resp)
    assert_invalid_client(resp)
    time.sleep(1.0)
    assert stack.bundles[ORG].hits == before_hits
    assert bundle_cluster_requests(stack) == before
    assert_healthy(stack)


# ------------------------------------------------------------------ FC-21


def test_fc_21_b_spoofed_header_on_another_path_removed(stack):
    """FC-21 b: `GET /authorize` with a spoofed identity header → forwarded, header removed."""
    resp = client.request(stack.port, "GET", "/authorize?response_type=code&client_id=x",
                          headers=[("x-spiffe-id", DEMO), ("X-Oauth-Client-Id", "demo-client")])
    assert_no_5xx(resp)
    [seen] = stack.auth.requests
    assert seen.path.startswith("/authorize")
    assert seen.header_values("x-spiffe-id") == [] and seen.header_values("x-oauth-client-id") == []
    assert_healthy(stack)


def test_fc_21_c_preset_header_replaced_by_the_verified_identity(stack):
    """FC-21 c / d: a JWT-SVID for workloads/batch with pre-set identity headers naming
    demo-client (twice, in mixed case) → accepted; the AS sees exactly one copy of each,
    naming workloads/batch."""
    headers = [("x-spiffe-id", DEMO), ("X-Spiffe-Id", DEMO), ("x-oauth-client-id", "demo-client")]
    resp = stack.post_assertion(pki.mint_svid(KEY, BATCH, ISSUER), headers=headers)
    assert_authenticated(resp, stack, spiffe_id=BATCH, client_id=BATCH)
    assert_healthy(stack)


# ------------------------------------------------------------------ FC-23


@pytest.mark.parametrize("uris, dns", [
    ([BATCH, DEMO], []),
    ([DEMO, "https://example.org/whatever"], []),
    ([], ["demo-client.example.org"]),
], ids=["a-two-spiffe-uris", "b-spiffe-and-https", "c-dns-only"])
def test_fc_23_certificate_without_exactly_one_spiffe_uri(stack, uris, dns):
    """FC-23 a – c over mTLS, with client_id = the SPIFFE ID → 401 invalid_client from the
    filter (the DNS-only certificate too: it is the only credential of a registered client)."""
    leaf = svid.leaf(ORG_CA, uris, dns=dns)
    files = svid.client_files(stack.workdir / "clients", leaf)
    resp = stack.post_mtls([("grant_type", "client_credentials"), ("client_id", DEMO)], files)
    assert_no_5xx(resp)
    assert_invalid_client(resp)
    assert_nothing_forwarded(stack)
    assert_healthy(stack)


# ------------------------------------------------------------------ FC-29


def test_fc_29_oversized_tokens_are_bounded(stack):
    """FC-29: a million dots (a body over 64 KiB → 413 invalid_request), a 21,830-character
    signature and a header nested 10,000 arrays deep (→ 401 invalid_client): no trap, no 5xx,
    and the VM still answers."""
    resp = stack.post([("grant_type", "client_credentials"),
                       ("client_assertion_type", client.JWT_SPIFFE),
                       ("client_assertion", "." * 1_000_000)])
    assert_no_5xx(resp)
    assert resp.status == 413 and resp.json()["error"] == "invalid_request", (resp.status, resp.body)
    assert_nothing_forwarded(stack)
    good = pki.mint_svid(KEY, DEMO, ISSUER)
    h, p, _ = good.split(".")
    nested = pki.b64url('{"alg":"ES256","x":' + "[" * 10_000 + "]" * 10_000 + "}")
    for token in (f"{h}.{p}.{'A' * 21_830}", f"{nested}.{p}.{'A' * 86}", "a.b.c.d.e", "a.b"):
        resp = stack.post_assertion(token)
        assert_no_5xx(resp)
        assert_invalid_client(resp)
        assert_nothing_forwarded(stack)
    assert_healthy(stack)


# ------------------------------------------------------------------ FC-20


def test_fc_20_requests_before_the_first_bundle_never_pass(tmp_path):
    """FC-20: four workers, the bundle endpoint slow to answer the first fetch, 12 concurrent
    token requests at start: every one is accepted once the bundle is there or refused with
    401 (never forwarded unauthenticated, never a 5xx), and the endpoint sees a handful of
    fetches, not one per request."""
    s = start_stack(tmp_path, {ORG: [KEY]}, [{"spiffe_id": DEMO, "client_id": "demo-client"}],
                    concurrency=4, bundle_refresh={"initial_delay_ms": 1000, "request_wait_ms": 3000})
    try:
        s.bundles[ORG].set_response(delay=1.0)
        token = pki.mint_svid(KEY, DEMO, ISSUER)
        with ThreadPoolExecutor(max_workers=12) as pool:
            responses = list(pool.map(lambda _: s.post_assertion(token), range(12)))
        assert_no_5xx(*responses)
        statuses = sorted(r.status for r in responses)
        assert set(statuses) <= {200, 401}, statuses
        for r in responses:
            if r.status == 401:
                assert_invalid_client(r)
        assert len(s.auth.requests) == statuses.count(200)
        assert all(seen.header_values("x-spiffe-id") == [DEMO] for seen in s.auth.requests)
        assert s.bundles[ORG].hits <= 4, s.bundles[ORG].hits
        log = s.envoy.log_text()
        assert "panicked" not in log
    finally:
        s.stop()


# ------------------------------------------------------------------ FC-18


def tls_breaking_server(port: int, stop: threading.Event):
    """On the bundle endpoint's port: accepts connections and answers garbage instead of a TLS
    ServerHello, so the fetch fails in the TLS handshake."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, port))
    srv.listen(16)
    srv.settimeout(0.2)
    hits = [0]

    def run():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits[0] += 1
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nnot tls\r\n")
            finally:
                conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return hits


def test_fc_18_failed_refreshes_keep_the_last_good_bundle(tmp_path):
    """FC-18 T1: after the good bundle, the endpoint answers 503, an HTML page, a truncated
    document, `{"keys":{"a":1}}`, a TLS failure, and a bundle whose extra RSA entry has an `n`
    in standard base64 (`+/=`; that entry is skipped, FC-07): after each the good token is
    still accepted. (`{"keys":[]}` is a valid bundle that revokes every key, SPIFFE Trust
    Domain and Bundle §4.1.3, BUN-2: test_bundle_refresh.py::test_empty_keys_revokes. T2, a
    cold start while the endpoint is down: test_bundle_endpoint_down.py.)"""
    s = start_stack(tmp_path, {ORG: [KEY]}, [{"spiffe_id": DEMO, "client_id": "demo-client"}],
                    bundle_refresh={"initial_delay_ms": 100, "default_refresh_seconds": 1,
                                    "min_refresh_seconds": 1, "max_refresh_seconds": 60,
                                    "retry_seconds": 1, "max_retry_seconds": 1,
                                    "hint_fraction": 1, "jitter_fraction": 0})
    good_doc = pki.bundle_bytes([KEY], sequence=1, refresh_hint=1)
    try:
        s.bundles[ORG].set_response(body=good_doc)
        token = pki.mint_svid(KEY, DEMO, ISSUER)
        assert s.wait_until_accepted(token), s.envoy.log_tail(60)
        rsa = pki.rsa_key("r-std").public_jwk()
        std_n = base64.b64encode(base64.urlsafe_b64decode(rsa["n"] + "==")).decode()
        assert any(c in std_n for c in "+/=")
        mixed = pki.bundle_document([KEY], sequence=2, refresh_hint=1,
                                    extra_entries=[dict(rsa, n=std_n)])
        for status, body in [(503, b"unavailable"), (200, b"<html><body>maintenance</body></html>"),
                             (200, good_doc[: len(good_doc) // 2]), (200, b'{"keys":{"a":1}}'),
                             (200, json.dumps(mixed).encode())]:
            s.bundles[ORG].set_response(status=status, body=body)
            s.wait_for_bundle_hits(ORG, 2)
            s.auth.clear()
            resp = s.post_assertion(token)
            assert_no_5xx(resp)
            assert resp.status == 200, (status, body[:40], resp.status, resp.body)
        # A TLS failure: the endpoint's port answers without TLS for a few refreshes.
        s.bundles[ORG].stop()
        stop = threading.Event()
        hits = tls_breaking_server(s.bundles[ORG].port, stop)
        try:
            deadline = time.monotonic() + 10
            while hits[0] < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert hits[0] >= 2
            resp = s.post_assertion(token)
            assert_no_5xx(resp)
            assert resp.status == 200, (resp.status, resp.body)
        finally:
            stop.set()
            time.sleep(0.5)
        log = s.envoy.log_text()
        assert "panicked" not in log and "unreachable" not in log
        reloads = {k: v for k, v in s.envoy.stats("vm_reload").items() if v != "0"}
        assert reloads == {}
    finally:
        s.stop()
