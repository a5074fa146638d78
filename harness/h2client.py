"""A minimal cleartext HTTP/2 client (prior knowledge) that controls DATA framing and request
trailers, for the cases HTTP/1 clients cannot produce (a body that ends with trailers)."""

from __future__ import annotations

import socket
import ssl  # noqa: F401  (annotation of multiplexed)
import time

import h2.config
import h2.connection
import h2.events

from .client import Response
from .servers import HOST


def request(port: int, method: str, path: str, headers: list[tuple[str, str]],
            pieces: list[bytes] = (), trailers: list[tuple[str, str]] | None = None,
            timeout: float = 10.0) -> Response | None:
    """One request: ``pieces`` as separate DATA frames (the last ends the stream unless
    ``trailers`` follow). Returns None when no response arrived."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    head = [(":method", method), (":path", path), (":scheme", "http"), (":authority", HOST), *headers]
    pieces = list(pieces)
    conn.send_headers(sid, head, end_stream=not pieces and trailers is None)
    for i, piece in enumerate(pieces):
        conn.send_data(sid, piece, end_stream=trailers is None and i == len(pieces) - 1)
        sock.sendall(conn.data_to_send())
        time.sleep(0.02)
    if trailers is not None:
        conn.send_headers(sid, trailers, end_stream=True)
    sock.sendall(conn.data_to_send())

    status, response_headers, body, done = None, [], b"", False
    deadline = time.monotonic() + timeout
    try:
        while not done and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    response_headers = [(k.decode().lower() if isinstance(k, bytes) else k.lower(),
                                         v.decode() if isinstance(v, bytes) else v)
                                        for k, v in event.headers]
                    status = int(dict(response_headers)[":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset,
                                        h2.events.ConnectionTerminated)):
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    if status is None:
        return None
    return Response(status, [(k, v) for k, v in response_headers if not k.startswith(":")], body)


def multiplexed(port: int, requests: list[tuple[str, str, list[tuple[str, str]], bytes]],
                tls: "ssl.SSLContext | None" = None, server_name: str | None = None,
                timeout: float = 10.0) -> list[Response | None]:
    """Several requests ``(method, path, headers, body)`` as concurrent streams of one HTTP/2
    connection (over TLS with ``tls``, prior knowledge either way): every stream's headers are
    sent first, then every body, so the filter holds all of them at once. Returns the responses
    in request order (None for a stream that got none)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_name)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sids = []
    for method, path, headers, _ in requests:
        sid = conn.get_next_available_stream_id()
        sids.append(sid)
        head = [(":method", method), (":path", path), (":scheme", "https" if tls else "http"),
                (":authority", server_name or HOST), *headers]
        conn.send_headers(sid, head, end_stream=False)
    sock.sendall(conn.data_to_send())
    time.sleep(0.05)
    for sid, (_, _, _, body) in zip(sids, requests):
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())

    state = {sid: {"status": None, "headers": [], "body": b"", "done": False} for sid in sids}
    deadline = time.monotonic() + timeout
    try:
        while not all(s["done"] for s in state.values()) and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                s = state.get(getattr(event, "stream_id", None))
                if isinstance(event, h2.events.ResponseReceived) and s is not None:
                    s["headers"] = [(k.decode().lower(), v.decode()) for k, v in event.headers]
                    s["status"] = int(dict(s["headers"])[":status"])
                elif isinstance(event, h2.events.DataReceived) and s is not None:
                    s["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and s:
                    s["done"] = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    deadline = 0
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return [None if state[sid]["status"] is None else
            Response(state[sid]["status"],
                     [(k, v) for k, v in state[sid]["headers"] if not k.startswith(":")],
                     state[sid]["body"]) for sid in sids]
