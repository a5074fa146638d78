"""Helper servers on 127.0.0.1, each in a background thread.

* ``BundleServer``: HTTPS SPIFFE bundle endpoint. The response (status, body, delay)
  can be changed at run time; ``hits`` counts requests; ``stop()``/``start()`` simulate
  an endpoint that is down (the port is kept across restarts).
* ``TokenEndpoint``: a tiny example authorization server over plain HTTP. It records
  every request it receives and issues a token on ``POST /token`` only when the filter's
  identity headers are present.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .pki import TlsFiles

HOST = "127.0.0.1"


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and that this process has not been given
    before: the kernel may offer a port again as soon as it is closed, and a caller that takes
    several ports before binding any (Envoy's listeners and admin) must not get one twice."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog (5) overflows when Envoy's workers release a dozen held
    # requests at once; a dropped SYN then outlasts Envoy's 1 s connect timeout (a 503).
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # TLS handshake failures and resets are expected in tests; anything else is a bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler that keeps the test output free of access logs."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class _BackgroundServer:
    """Start/stop an HTTP server in a thread, on a port that stays fixed across restarts."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> _Server:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self):
        if self._server is None:
            self._server = self._make_server()
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                            name=type(self).__name__)
            self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ----------------------------------------------------------------- bundle endpoint


@dataclass
class BundleResponse:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/json"
    location: str | None = None  # sent as a Location header (redirects)


class BundleServer(_BackgroundServer):
    """HTTPS server that serves a SPIFFE bundle at ``path``, and whatever ``serve_also`` set at
    other paths (anything else: 404).

    Every response carries ``Connection: close``, so a stopped server really is down
    (no pooled connection keeps answering).
    """

    def __init__(self, tls: TlsFiles, body: bytes = b"", path: str = "/bundle.json", port: int = 0):
        super().__init__(port)
        self.path = path
        self.response = BundleResponse(body=body)
        self.other_paths: dict[str, BundleResponse] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self._lock = threading.Lock()
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(tls.server_cert, tls.server_key)

    @property
    def hits(self) -> int:
        """Number of requests received on ``path``."""
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == self.path)

    def hits_on(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    def set_response(self, body: bytes | None = None, status: int | None = None,
                     delay: float | None = None, content_type: str | None = None,
                     location: str | None = None):
        """Change what the next requests get; unspecified parts stay as they are, except
        ``location``, which is sent only when given."""
        with self._lock:
            r = self.response
            self.response = BundleResponse(
                status=r.status if status is None else status,
                body=r.body if body is None else body,
                delay=r.delay if delay is None else delay,
                content_type=r.content_type if content_type is None else content_type,
                location=location,
            )

    def serve_also(self, path: str, body: bytes, status: int = 200):
        """Answer GETs of ``path`` (another path than the bundle's) with ``body``."""
        with self._lock:
            self.other_paths[path] = BundleResponse(status=status, body=body)

    def _make_server(self) -> _Server:
        owner = self

        class Handler(_QuietHandler):

            def do_GET(self):
                with owner._lock:
                    owner.requests.append(("GET", self.path, dict(self.headers.items())))
                    resp = owner.response if self.path == owner.path else owner.other_paths.get(
                        self.path,
                        BundleResponse(status=404, body=b"not found\n", content_type="text/plain"))
                if resp.delay:
                    time.sleep(resp.delay)
                self.send_response(resp.status)
                self.send_header("content-type", resp.content_type)
                if resp.location is not None:
                    self.send_header("location", resp.location)
                self.send_header("content-length", str(len(resp.body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(resp.body)

        server = _Server((HOST, self.port), Handler, bind_and_activate=False)
        server.socket = self._ssl.wrap_socket(server.socket, server_side=True,
                                              do_handshake_on_connect=False)
        server.server_bind()
        server.server_activate()
        return server


# ------------------------------------------------------------ authorization server


@dataclass
class RecordedRequest:
    """One request as the authorization server received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]  # lower-cased names, in order, duplicates kept
    body: bytes = b""
    complete: bool = False  # body fully read
    response_status: int | None = None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None


class TokenEndpoint(_BackgroundServer):
    """Example authorization server (plain HTTP, keep-alive).

    ``POST <token_path>``: 200 with an access token if the filter's identity headers are
    present, otherwise 401 ``{"error":"invalid_client"}``. ``GET`` of a path in ``documents``:
    200 with that body (bytes, as ``application/json`` unless the entry is a (bytes, content
    type) pair). Any other request: 200 ``{"ok":true}``. Every request is appended to
    ``requests`` as soon as its headers are read, then completed with the body.
    """

    def __init__(self, token_path: str = "/token", port: int = 0,
                 client_id_header: str = "x-oauth-client-id", spiffe_id_header: str = "x-spiffe-id"):
        super().__init__(port)
        self.token_path = token_path
        self.client_id_header = client_id_header
        self.spiffe_id_header = spiffe_id_header
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.documents: dict[str, bytes | tuple[bytes, str]] = {}

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def _answer(self, req: RecordedRequest) -> tuple[int, dict, dict | bytes]:
        document = self.documents.get(req.path.split("?", 1)[0])
        if req.method == "GET" and document is not None:
            body, content_type = document if isinstance(document, tuple) else (
                document, "application/json")
            return 200, {"content-type": content_type}, body
        if req.path.split("?", 1)[0] != self.token_path:
            return 200, {}, {"ok": True}
        if req.method != "POST":
            return 405, {}, {"error": "invalid_request"}
        client_id = req.header(self.client_id_header)
        if client_id and req.header(self.spiffe_id_header):
            token = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                     "expires_in": 300, "client_id": client_id}
            return 200, {"cache-control": "no-store", "pragma": "no-cache"}, token
        return 401, {"cache-control": "no-store"}, {"error": "invalid_client"}

    def _make_server(self) -> _Server:
        owner = self

        class Handler(_QuietHandler):

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _handle(self):
                req = RecordedRequest(self.command, self.path,
                                      [(k.lower(), v) for k, v in self.headers.items()])
                with owner._lock:
                    owner._requests.append(req)
                req.body = self._read_body()
                req.complete = True
                status, headers, payload = owner._answer(req)
                req.response_status = status
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = {"content-type": "application/json", **headers}
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return _Server((HOST, self.port), Handler)
