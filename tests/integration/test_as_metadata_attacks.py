"""Attacks on the AS metadata rewriting (META-1, README "AS metadata") in Envoy, with a scripted
raw HTTP/1.1 authorization server that answers exactly the bytes a test asks for (framing,
pieces and delays, trailers, statuses, encodings), keeps its connections alive and records on
which connection each request came. Review 7.

Useful coverage (pass): keep-alive after a rewritten answer, slowly streamed and oversized
documents, HEAD/304/206/gzip/empty/close-delimited answers, repeated Content-Length, an answer
sent before the request body ended, HTTP/2 downstream, response trailers, path spellings, a
document stalled past the route timeout.

Regressions of the review's defects (now fixed):
* CRASH (was severe): when the completed document no longer fitted Envoy's per-connection
  buffer limit (the original did), replacing the body made Envoy send a 500 from inside the
  filter's callback; the stream was torn down re-entrantly, the SDK panicked ("RefCell already
  borrowed" in proxy_on_log) and the whole Envoy process died with a segmentation fault
  (max_bytes 1048576 with Envoy's default 1 MiB buffers, or 64 KiB with the 32 KiB buffers
  Envoy's edge best practices recommend; an AS that builds its metadata from the request's Host
  let any client size the document into the window). Now max_bytes is at most 16 KiB (default
  8 KiB) and a completed document is never longer than max_bytes.
* A document within max_bytes but over the buffer limit was a 500 rather than passed
  unchanged; so was any document over max_bytes when max_bytes was at the buffer limit."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
from conftest import ISSUER, start_stack

import harness.envoy
from harness import client, h2client, pki
from harness.servers import HOST, free_port

CHECK_CONFIG = harness.envoy.REPO / "target" / "debug" / "check-config"
ORG = "example.org"
RFC8414 = "/.well-known/oauth-authorization-server"
METADATA = {
    "issuer": ISSUER,
    "token_endpoint": f"{ISSUER}/token",
    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
}
COMPLETED = ["private_key_jwt", "spiffe_jwt"]


# ----------------------------------------------------------------- scripted upstream


@dataclass
class Seen:
    connection: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name):
        return [v for k, v in self.headers if k == name]


@dataclass
class Answer:
    """Raw pieces written one after another (each after its delay in seconds)."""

    pieces: list[tuple[float, bytes]]
    close: bool = False
    # Answer as soon as the request head is read (before its body).
    early: bool = False


def response(status: int = 200, body: bytes = b"", headers=(), *, chunks: list[bytes] | None = None,
             delay: float = 0.0, trailers=None, length: bool = True, close: bool = False,
             early: bool = False, reason: str = "X") -> Answer:
    head = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    if chunks is not None:
        head.append("transfer-encoding: chunked")
        pieces = [(0.0, ("\r\n".join(head) + "\r\n\r\n").encode())]
        for c in chunks:
            pieces.append((delay, b"%x\r\n%s\r\n" % (len(c), c)))
        tail = b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in (trailers or [])) + b"\r\n"
        pieces.append((delay, tail))
        return Answer(pieces, close, early)
    if length:
        head.append(f"content-length: {len(body)}")
    if close:
        head.append("connection: close")
    return Answer([(0.0, ("\r\n".join(head) + "\r\n\r\n").encode() + body)], close, early)


class ScriptedAS:
    """A raw HTTP/1.1 server: ``script(seen)`` gives the Answer for each request."""

    def __init__(self):
        self.port = free_port()
        self.seen: list[Seen] = []
        self.script = lambda seen: response(200, b'{"ok":true}', [("content-type", "application/json")])
        self._lock = threading.Lock()
        self._connections = 0
        self._sock = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def clear(self):
        with self._lock:
            self.seen.clear()

    def stop(self):
        self._sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [(k.strip().lower(), v.strip()) for k, v in
                           (line.split(":", 1) for line in lines[1:])]
                seen = Seen(number, method, path, headers, b"")
                answer = self.script(seen)
                if answer.early:
                    self._write(conn, answer)
                length = int(dict(headers).get("content-length", "0"))
                chunked = "chunked" in dict(headers).get("transfer-encoding", "")
                if chunked:
                    while not buf.endswith(b"0\r\n\r\n"):
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    seen.body, buf = buf, b""
                else:
                    while len(buf) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    seen.body, buf = buf[:length], buf[length:]
                with self._lock:
                    self.seen.append(seen)
                if not answer.early:
                    self._write(conn, answer)
                if answer.close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    @staticmethod
    def _write(conn, answer: Answer):
        for delay, piece in answer.pieces:
            if delay:
                time.sleep(delay)
            conn.sendall(piece)


# --------------------------------------------------------------------------- stacks


def start(tmp_path_factory, name: str, edits=(), **overrides):
    """A stack whose AS is a ScriptedAS; ``edits`` are (old, new) replacements of the rendered
    Envoy configuration (e.g. a listener buffer limit)."""
    upstream = ScriptedAS()
    original = harness.envoy.render_config

    def render(*args, **kwargs):
        text = original(*args, **kwargs)
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        return text

    harness.envoy.render_config = render
    try:
        s = start_stack(tmp_path_factory.mktemp(name), {ORG: [pki.ec_key("k")]},
                        [{"spiffe_id": "spiffe://example.org/w"}], upstream_port=upstream.port,
                        **overrides)
    finally:
        harness.envoy.render_config = original
    s.upstream = upstream
    return s


METADATA_CONFIG = {"paths": [RFC8414, "/token"], "auth_methods": ["spiffe_jwt"]}

TRAILERS = (
    "  - name: authorization_server\n    type: STATIC\n    connect_timeout: 1s\n",
    "  - name: authorization_server\n    type: STATIC\n    connect_timeout: 1s\n"
    "    typed_extension_protocol_options:\n"
    "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
    "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
    "        explicit_http_config: { http_protocol_options: { enable_trailers: true } }\n",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start(tmp_path_factory, "envoy-metadata-attacks", edits=[TRAILERS],
              as_metadata=dict(METADATA_CONFIG, max_bytes=4096))
    try:
        yield s
    finally:
        s.stop()
        s.upstream.stop()


@pytest.fixture(autouse=True)
def _clear(request):
    for name in ("stack", "small_buffers"):
        if name in request.fixturenames:
            request.getfixturevalue(name).upstream.clear()
    yield


DOC = json.dumps(METADATA).encode()
JSON = [("content-type", "application/json")]


def completed(body: bytes) -> bool:
    return json.loads(body)["token_endpoint_auth_methods_supported"] == COMPLETED


# -------------------------------------------------------------------------- attacks


def test_keep_alive_after_a_rewritten_answer(stack):
    """Downstream and upstream connections stay in step after a rewritten (longer, chunked)
    answer: the next requests on both get their own answers."""
    answers = {RFC8414: response(200, DOC, JSON), "/next": response(200, b'{"next":1}', JSON)}
    stack.upstream.script = lambda seen: answers.get(seen.path, response(200, b"other", JSON))
    conn = client.KeepAlive(stack.port)
    try:
        for _ in range(3):
            first = client._send(conn._conn, "GET", RFC8414, None, [])
            assert first.status == 200 and completed(first.body)
            second = client._send(conn._conn, "GET", "/next", None, [])
            assert (second.status, second.body) == (200, b'{"next":1}')
    finally:
        conn.close()
    assert len({s.connection for s in stack.upstream.seen}) == 1  # one pooled upstream connection


def test_slowly_streamed_document_is_completed(stack):
    pieces = [DOC[i:i + 7] for i in range(0, len(DOC), 7)]
    stack.upstream.script = lambda seen: response(200, headers=JSON, chunks=pieces, delay=0.02)
    resp = client.request(stack.port, "GET", RFC8414)
    assert resp.status == 200 and completed(resp.body)


def test_oversized_streamed_document_passes_whole(stack):
    big = json.dumps(dict(METADATA, padding="x" * 10000)).encode()
    pieces = [big[i:i + 1000] for i in range(0, len(big), 1000)]
    stack.upstream.script = lambda seen: response(200, headers=JSON, chunks=pieces, delay=0.01)
    resp = client.request(stack.port, "GET", RFC8414)
    assert (resp.status, resp.body) == (200, big)


@pytest.mark.parametrize("status, headers", [
    (304, []), (206, [("content-range", "bytes 0-9/99")]), (200, [("content-encoding", "gzip")]),
    (200, [("content-encoding", "br")]), (404, []),
])
def test_other_answers_untouched(stack, status, headers):
    stack.upstream.script = lambda seen: response(status, b"" if status == 304 else DOC,
                                                  JSON + headers)
    resp = client.request(stack.port, "GET", RFC8414,
                          headers=[("range", "bytes=0-9"), ("if-none-match", '"x"')])
    assert resp.status == status
    assert resp.body == (b"" if status == 304 else DOC)


def test_head_is_untouched(stack):
    stack.upstream.script = lambda seen: Answer([(0.0, b"HTTP/1.1 200 OK\r\ncontent-type: "
                                                  b"application/json\r\ncontent-length: %d\r\n\r\n"
                                                  % len(DOC))])
    resp = client.request(stack.port, "HEAD", RFC8414)
    assert resp.status == 200 and resp.header("content-length") == str(len(DOC))
    # And the connection is still usable for a rewritten GET.
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    assert completed(client.request(stack.port, "GET", RFC8414).body)


def test_empty_and_close_delimited_answers(stack):
    stack.upstream.script = lambda seen: response(200, headers=JSON, chunks=[])
    assert client.request(stack.port, "GET", RFC8414).body == b""
    # No length, no chunking: the body ends when the AS closes the connection.
    stack.upstream.script = lambda seen: response(200, DOC, JSON + [("connection", "close")],
                                                  length=False, close=True)
    resp = client.request(stack.port, "GET", RFC8414)
    assert resp.status == 200 and completed(resp.body)


def test_answer_before_the_request_body_ends(stack):
    """A GET with a body the AS does not wait for: the answer is still completed, nothing
    hangs, and the next request works."""
    stack.upstream.script = lambda seen: response(200, DOC, JSON, early=True)
    sock = socket.create_connection((HOST, stack.port), timeout=10)
    try:
        sock.sendall(f"GET {RFC8414} HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc".encode())
        data = b""
        deadline = time.monotonic() + 5
        while b"0\r\n\r\n" not in data and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        sock.sendall(b"defghij")
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"spiffe_jwt" in data
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    assert completed(client.request(stack.port, "GET", RFC8414).body)


def test_http2_downstream(stack):
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    resp = h2client.request(stack.port, "GET", RFC8414, [])
    assert resp.status == 200 and completed(resp.body)
    assert resp.header_values("content-length") in ([], [str(len(resp.body))])


def test_response_trailers_end_the_document(stack):
    """An answer that ends with trailers (no end of stream in the body callback) is completed
    in the trailers callback; the HTTP/2 client gets the completed document."""
    pieces = [DOC[:20], DOC[20:]]
    stack.upstream.script = lambda seen: response(200, headers=JSON, chunks=pieces,
                                                  trailers=[("x-trailer", "t")])
    resp = h2client.request(stack.port, "GET", RFC8414, [])
    assert resp.status == 200 and completed(resp.body), resp.body


def test_metadata_path_that_is_a_token_path(stack):
    """GET /token is completed like a document; a POST to it is a token request, its answer
    untouched."""
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    assert completed(client.request(stack.port, "GET", "/token").body)
    resp = stack.post([("grant_type", "client_credentials"), ("client_id", "c")])
    assert resp.body == DOC


@pytest.mark.parametrize("path", ["//.well-known//oauth-authorization-server",
                                  "/.well-known/%6Fauth-authorization-server",
                                  "/.WELL-KNOWN/oauth-authorization-server",
                                  "/.well-known/oauth-authorization-server/",
                                  "/.well-known/./oauth-authorization-server"])
def test_path_spellings(stack, path):
    """What the AS is asked for and whether it is completed, per spelling (no crash, no hang,
    whole body either way)."""
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    resp = client.request(stack.port, "GET", path)
    assert resp.status == 200
    [seen] = stack.upstream.seen
    assert completed(resp.body) == (seen.path == RFC8414), (path, seen.path, resp.body)


# ------------------------------------------------- Envoy's buffer limit below max_bytes


@pytest.fixture(scope="module")
def small_buffers(tmp_path_factory):
    """The listener with Envoy's edge best-practice buffer limit (32 KiB), max_bytes at its
    default (64 KiB)."""
    s = start(tmp_path_factory, "envoy-metadata-buffers",
              edits=[("  - name: token_listener\n",
                      "  - name: token_listener\n    per_connection_buffer_limit_bytes: 32768\n")],
              as_metadata=dict(METADATA_CONFIG))
    try:
        yield s
    finally:
        s.stop()
        s.upstream.stop()


def test_document_over_envoys_buffer_limit_still_served(small_buffers):
    big = json.dumps(dict(METADATA, padding="x" * 40000)).encode()  # < 65536 = max_bytes
    pieces = [big[i:i + 8000] for i in range(0, len(big), 8000)]
    small_buffers.upstream.script = lambda seen: response(200, headers=JSON, chunks=pieces,
                                                          delay=0.01)
    resp = client.request(small_buffers.port, "GET", RFC8414)
    assert resp.status == 200, (resp.status, resp.body[:200])
    assert json.loads(resp.body)["padding"] == "x" * 40000


# ----------------------------------- max_bytes at its ceiling, Envoy's default buffer limit


@pytest.fixture(scope="module")
def max_ceiling(tmp_path_factory):
    """as_metadata.max_bytes at its ceiling (16 KiB)."""
    s = start(tmp_path_factory, "envoy-metadata-ceiling",
              as_metadata=dict(METADATA_CONFIG, max_bytes=16384))
    try:
        yield s
    finally:
        s.stop()
        s.upstream.stop()


def padded(size: int, document=METADATA) -> bytes:
    """A compact document of exactly ``size`` bytes."""
    doc = json.dumps(dict(document, padding=""), separators=(",", ":")).encode()
    return json.dumps(dict(document, padding="x" * (size - len(doc))),
                      separators=(",", ":")).encode()


def get_document(stack, body: bytes, headers=()) -> client.Response:
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    stack.upstream.script = lambda seen: response(200, headers=JSON, chunks=pieces)
    return client.request(stack.port, "GET", RFC8414, headers=list(headers))


@pytest.mark.parametrize("size", [16384 - 100, 16384 - 5, 16384 + 1, 16384 + 5000, 1048576 + 1])
def test_documents_around_the_ceiling(max_ceiling, size):
    """Completed when the completed document fits max_bytes, passed whole otherwise."""
    body = padded(size)
    assert len(body) == size
    resp = get_document(max_ceiling, body)
    assert resp.status == 200, (size, resp.status, resp.body[:100])
    got = json.loads(resp.body)
    assert got["padding"] == json.loads(body)["padding"]
    # Completing adds 13 bytes (,"spiffe_jwt").
    assert got["token_endpoint_auth_methods_supported"] == (
        COMPLETED if size + 13 <= 16384 else ["private_key_jwt"])


def envoy_alive(stack) -> bool:
    try:
        stack.envoy.admin_get("/ready", timeout=2)
        return True
    except OSError:
        return False


def test_a_max_bytes_near_envoys_buffer_limits_is_refused(max_ceiling):
    """The crash needed max_bytes near Envoy's buffer limit (1 MiB by default, 32 KiB at the
    edge): the configuration no longer allows it. (Envoy stays up after the ceiling cases.)"""
    refused = subprocess.run(
        [str(CHECK_CONFIG), "-"], capture_output=True, text=True,
        input=json.dumps(dict(max_ceiling.config, as_metadata=dict(METADATA_CONFIG,
                                                                   max_bytes=16385))))
    assert refused.returncode == 1
    assert "configuration field as_metadata.max_bytes: must be 1024–16384" in refused.stdout
    assert envoy_alive(max_ceiling)


EDGE_BUFFERS = ("  - name: token_listener\n",
                "  - name: token_listener\n    per_connection_buffer_limit_bytes: 32768\n")


@pytest.mark.parametrize("size", [8192 - 5, 32760])
def test_documents_near_an_edge_buffer_limit(tmp_path_factory, size):
    """Envoy's edge best practice (32 KiB per-connection buffers) and the default max_bytes:
    a document that would outgrow max_bytes when completed, and one near the buffer limit
    (which crashed Envoy before), both pass unchanged and Envoy stays up."""
    s = start(tmp_path_factory, "envoy-metadata-crash-32k", edits=[EDGE_BUFFERS],
              as_metadata=dict(METADATA_CONFIG))
    try:
        resp = None
        try:
            resp = get_document(s, padded(size))
        except OSError:
            pass
        time.sleep(0.5)
        assert envoy_alive(s), s.envoy.log_tail(30)
        assert resp is not None and resp.status == 200
        assert resp.body == padded(size)
    finally:
        s.stop()
        s.upstream.stop()


def raw_get(port: int, path: str, host: str) -> bytes:
    """A GET with exactly one Host header; what came back before the connection closed."""
    sock = socket.create_connection((HOST, port), timeout=10)
    data = b""
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return data


def reflecting_document(host: str) -> bytes:
    """Metadata as an AS that builds its URLs from the request's Host writes it (Spring
    Authorization Server without a configured issuer, Keycloak without a fixed hostname)."""
    base = f"https://{host}"
    return json.dumps({
        "issuer": base, "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
        "introspection_endpoint": f"{base}/introspect", "revocation_endpoint": f"{base}/revoke",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }, separators=(",", ":")).encode()


def test_a_client_sizes_a_reflected_document_to_crash_envoy(tmp_path_factory):
    """The AS reflects the Host header in its metadata: an unauthenticated client picks the
    Host length that puts the document just under the listener's 32 KiB buffer limit."""
    s = start(tmp_path_factory, "envoy-metadata-crash-host", edits=[EDGE_BUFFERS],
              as_metadata=dict(METADATA_CONFIG))

    def answer(seen):
        body = reflecting_document(dict(seen.headers)["host"])
        return response(200, headers=JSON, chunks=[body[i:i + 16384]
                                                    for i in range(0, len(body), 16384)])

    s.upstream.script = answer
    try:
        # Each character of the host name is one byte in each of the five URLs.
        fixed = len(reflecting_document(""))
        host = "a" * ((32760 - fixed) // 5)
        # Completing adds 13 bytes (,"spiffe_jwt"): past 32768.
        assert 32768 - 13 < len(reflecting_document(host)) <= 32768
        raw_get(s.port, RFC8414, host)
        time.sleep(0.5)
        assert envoy_alive(s), s.envoy.log_tail(30)
    finally:
        s.stop()
        s.upstream.stop()


@pytest.mark.parametrize("lengths", [("{n}", "{n}"), ("{n}", "{m}"), ("{n}, {n}",)])
def test_repeated_content_length(stack, lengths):
    """Envoy's codec decides (502 or the document); the filter neither crashes nor hangs."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(
        b"content-length: %s\r\n" % v.format(n=len(DOC), m=len(DOC) + 1).encode()
        for v in lengths)
    stack.upstream.script = lambda seen: Answer([(0.0, head + b"\r\n" + DOC)], close=True)
    resp = client.request(stack.port, "GET", RFC8414)
    assert resp.status in (200, 502)
    if resp.status == 200:
        assert completed(resp.body)
    stack.upstream.script = lambda seen: response(200, DOC, JSON)
    assert completed(client.request(stack.port, "GET", RFC8414).body)


@pytest.fixture(scope="module")
def short_timeout(tmp_path_factory):
    s = start(tmp_path_factory, "envoy-metadata-timeout",
              edits=[("timeout: 15s", "timeout: 1s")], as_metadata=dict(METADATA_CONFIG))
    try:
        yield s
    finally:
        s.stop()
        s.upstream.stop()


def test_document_stalled_past_the_route_timeout(short_timeout):
    """The AS sends half the document and stalls: Envoy's route timeout ends the held answer
    (a 504 or a reset), the VM survives and the next document is completed."""
    half = len(DOC) // 2
    short_timeout.upstream.script = lambda seen: response(
        200, headers=JSON, chunks=[DOC[:half], DOC[half:]], delay=2.5)
    try:
        resp = client.request(short_timeout.port, "GET", RFC8414)
        assert resp.status in (504, 200), resp.status
        assert resp.status == 504 or not completed(resp.body)
    except OSError:
        pass
    time.sleep(3)
    assert envoy_alive(short_timeout)
    short_timeout.upstream.script = lambda seen: response(200, DOC, JSON)
    assert completed(client.request(short_timeout.port, "GET", RFC8414).body)
    assert "panicked" not in short_timeout.envoy.log_text()
