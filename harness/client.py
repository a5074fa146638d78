"""Small HTTP/1.1 client for talking to Envoy: normal requests, and a raw-socket sender
that delivers a body in several pieces with delays (chunked or with Content-Length)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from .servers import HOST

FORM = "application/x-www-form-urlencoded"
JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # lower-cased names, duplicates kept
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def _response(resp: http.client.HTTPResponse) -> Response:
    body = resp.read()
    return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], body)


def form(params) -> bytes:
    """URL-encode a dict or a list of pairs (pairs allow repeated names)."""
    return urlencode(params).encode()


def assertion_params(assertion: str, **extra) -> list[tuple[str, str]]:
    """``client_credentials`` + jwt-spiffe assertion, plus ``extra`` parameters."""
    return [("grant_type", "client_credentials"), ("client_assertion_type", JWT_SPIFFE),
            ("client_assertion", assertion), *extra.items()]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: list[tuple[str, str]] | dict | None = None, timeout: float = 10.0,
            tls: "Tls | None" = None) -> Response:
    """One request on a fresh connection. ``headers`` may repeat names (list of pairs); with
    ``tls`` the connection is HTTPS (see ``mtls``)."""
    conn = _connection(port, tls, timeout)
    try:
        return _send(conn, method, path, body, headers)
    finally:
        conn.close()


def _connection(port: int, tls: "Tls | None", timeout: float) -> http.client.HTTPConnection:
    return (http.client.HTTPConnection(HOST, port, timeout=timeout) if tls is None
            else _TlsConnection(tls, port, timeout))


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
          headers) -> Response:
    conn.putrequest(method, path, skip_accept_encoding=True)
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    names = {k.lower() for k, _ in items}
    for k, v in items:
        conn.putheader(k, v)
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    return _response(conn.getresponse())


class KeepAlive:
    """Requests one after another on one kept-alive HTTP/1.1 connection (HTTPS with ``tls``).
    A request raises instead of being sent on any other connection (after an answer that
    closed the first one, say)."""

    def __init__(self, port: int, tls: "Tls | None" = None, timeout: float = 10.0):
        self._conn = _connection(port, tls, timeout)
        self._conn.connect()
        self._sock = self._conn.sock

    def post_form(self, path: str, params, headers=None) -> Response:
        if self._conn.sock is not self._sock:
            raise ConnectionError("the connection was not kept alive")
        hdrs = [("Content-Type", FORM), *(headers or [])]
        return _send(self._conn, "POST", path, form(params), hdrs)

    def close(self):
        self._conn.close()


def post_form(port: int, path: str, params, headers=None, content_type: str = FORM,
              tls: "Tls | None" = None) -> Response:
    """POST ``params`` form-encoded (``params`` may also be ready-made bytes)."""
    body = params if isinstance(params, bytes) else form(params)
    hdrs = [("Content-Type", content_type)] if content_type else []
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return request(port, "POST", path, body, hdrs + list(items), tls=tls)


@dataclass(frozen=True)
class Tls:
    """Client TLS settings: the context and the server name to verify (and send as SNI)."""

    context: ssl.SSLContext
    server_name: str


def mtls(ca_file, server_name: str, cert_file=None, key_file=None) -> Tls:
    """Trust ``ca_file`` for ``server_name`` and, when given, present ``cert_file`` (leaf
    first, then intermediates) with ``key_file``."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return Tls(ctx, server_name)


class _TlsConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1 while verifying the certificate of ``tls.server_name``."""

    def __init__(self, tls: Tls, port: int, timeout: float):
        super().__init__(HOST, port, timeout=timeout)
        self._tls = tls

    def connect(self):
        super().connect()
        self.sock = self._tls.context.wrap_socket(self.sock, server_hostname=self._tls.server_name)


def post_in_pieces(port: int, path: str, pieces: list[bytes], headers=None,
                   content_type: str = FORM, chunked: bool = True, delay: float = 0.15,
                   timeout: float = 10.0) -> Response:
    """POST a body written to the socket in ``pieces`` with ``delay`` seconds between them,
    as ``Transfer-Encoding: chunked`` (one chunk per piece) or with ``Content-Length``."""
    total = b"".join(pieces)
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Type: {content_type}",
            "Connection: close"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(total)}")
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    head += [f"{k}: {v}" for k, v in items]
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for piece in pieces:
            time.sleep(delay)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            time.sleep(delay)
            sock.sendall(b"0\r\n\r\n")
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        return _response(resp)
    finally:
        sock.close()
