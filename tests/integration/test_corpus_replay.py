"""The fuzz corpora through Envoy (fuzz/corpus/, seeds plus what fuzzing added): every token
request body and every JWT-SVID as a client assertion is sent to the token endpoint, and a
sample of the bundle corpus is served by the bundle endpoint. Nothing may answer 5xx, and no VM
may panic or be reloaded (FC-17). The certificate corpus cannot be injected here: Envoy replaces
any client-sent x-forwarded-client-cert, which is the point; it is replayed natively
(`fuzz_targets::tests::corpora_replay_without_panics`)."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from conftest import ISSUER, TOKEN_PATH, start_stack

from harness import client, pki

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "fuzz" / "corpus"
ORG = "example.org"
KEY = pki.ec_key("org")
DEMO = "spiffe://example.org/demo-client"
MAX_INPUTS = 600  # per corpus, in file-name order (the corpora are small; this caps a big merge)


def corpus(name: str) -> list[bytes]:
    files = sorted(p for p in (CORPUS / name).iterdir() if p.is_file())
    return [p.read_bytes() for p in files[:MAX_INPUTS]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(
        tmp_path_factory.mktemp("envoy-corpus"), {ORG: [KEY]},
        [{"spiffe_id": DEMO, "client_id": "demo-client"}],
        bundle_refresh={"initial_delay_ms": 100, "min_refresh_seconds": 1, "default_refresh_seconds": 1,
                        "max_refresh_seconds": 2, "hint_fraction": 1, "jitter_fraction": 0,
                        "retry_seconds": 1, "max_retry_seconds": 1},
    )
    try:
        assert s.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER)), s.envoy.log_tail(60)
        yield s
    finally:
        s.stop()


def assert_vm_intact(stack):
    """FC-17: no VM panicked or was reloaded."""
    log = stack.envoy.log_text()
    assert "panicked" not in log, log[-3000:]
    reloads = {k: v for k, v in stack.envoy.stats("vm_reload").items() if v != "0"}
    assert reloads == {}


def send_all(stack, bodies: list[bytes]) -> dict[int, int]:
    """POST each body to the token path on one keep-alive connection; status → count."""
    seen: dict[int, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    for body in bodies:
        try:
            conn.request("POST", TOKEN_PATH, body=body, headers={"content-type": client.FORM})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
            status = 0
        seen[status] = seen.get(status, 0) + 1
    conn.close()
    return seen


def test_token_request_corpus(stack):
    """FC-17: every token request body of the corpus gets a 2xx/4xx answer."""
    seen = send_all(stack, corpus("token_request"))
    assert sum(seen.values()) >= 8
    assert all(200 <= s < 500 for s in seen), seen
    assert_vm_intact(stack)


def test_jwt_svid_corpus_as_assertions(stack):
    """FC-17: every JWT-SVID of the corpus, as a client assertion, gets a 2xx/4xx answer."""
    bodies = [client.form(client.assertion_params(t.decode("utf-8", "replace"))) for t in corpus("jwt_svid")]
    seen = send_all(stack, bodies)
    assert sum(seen.values()) >= 10
    assert all(200 <= s < 500 for s in seen), seen
    assert_vm_intact(stack)


def test_bundle_corpus_served_by_the_endpoint(stack):
    """FC-17, FC-18: bundle documents of the corpus served one after another (1 s refresh):
    each is fetched and judged without trapping a VM, and a good bundle afterwards is used."""
    server = stack.bundles[ORG]
    samples = corpus("bundle")[:12]
    try:
        for doc in samples:
            server.set_response(body=doc, status=200)
            stack.wait_for_bundle_hits(ORG, 1)
            resp = stack.post_assertion(pki.mint_svid(KEY, DEMO, ISSUER))
            assert resp.status < 500, (resp.status, doc[:200])
    finally:
        server.set_response(body=pki.bundle_bytes([KEY], sequence=99, refresh_hint=1), status=200)
    assert stack.wait_until_accepted(pki.mint_svid(KEY, DEMO, ISSUER), timeout=10)
    assert_vm_intact(stack)
