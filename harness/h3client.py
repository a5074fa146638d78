"""Minimal HTTP/3 client (aioquic) for attacking the filter over QUIC: one connection, requests
one after another, optionally a client certificate and a chosen initial destination connection
ID (QUIC lets the client pick it; Envoy derives its ``connection.id`` from the server
connection ID, which for an 8-byte client-chosen ID is that very ID)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

from .client import FORM, Response, form
from .servers import HOST


class _H3Protocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._streams: dict[int, list] = {}
        self._waiters: dict[int, asyncio.Future] = {}

    def quic_event_received(self, event):
        for ev in self._http.handle_event(event):
            if isinstance(ev, (HeadersReceived, DataReceived)):
                self._streams.setdefault(ev.stream_id, []).append(ev)
                if ev.stream_ended and ev.stream_id in self._waiters:
                    self._waiters.pop(ev.stream_id).set_result(self._streams.pop(ev.stream_id))

    async def post(self, authority: str, path: str, body: bytes, headers=()) -> Response:
        sid = self._quic.get_next_available_stream_id()
        hdrs = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority.encode()),
                (b":path", path.encode()), (b"content-type", FORM.encode()),
                (b"content-length", str(len(body)).encode())]
        hdrs += [(k.lower().encode(), v.encode()) for k, v in headers]
        self._http.send_headers(sid, hdrs, end_stream=False)
        self._http.send_data(sid, body, end_stream=True)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[sid] = waiter
        self.transmit()
        events = await asyncio.wait_for(waiter, 10)
        status, out_headers, data = 0, [], b""
        for ev in events:
            if isinstance(ev, HeadersReceived):
                for k, v in ev.headers:
                    if k == b":status":
                        status = int(v)
                    else:
                        out_headers.append((k.decode(), v.decode()))
            else:
                data += ev.data
        return Response(status, out_headers, data)


def post_forms(port: int, server_name: str, ca_file: Path, requests: list, *,
               cert: tuple[Path, Path] | None = None, dcid: bytes | None = None) -> list[Response]:
    """Sends each ``(path, params, headers)`` of ``requests`` on one HTTP/3 connection to
    127.0.0.1:``port`` and closes it; ``dcid`` fixes the client's initial destination CID."""

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    config.load_verify_locations(str(ca_file))
    if cert is not None:
        config.load_cert_chain(str(cert[0]), str(cert[1]))

    def protocol(quic, **kwargs):
        if dcid is not None:
            quic._peer_cid.cid = dcid
            quic._original_destination_connection_id = dcid
        return _H3Protocol(quic, **kwargs)

    async def run():
        out = []
        async with connect(HOST, port, configuration=config, create_protocol=protocol) as conn:
            for path, params, headers in requests:
                out.append(await conn.post(server_name, path, form(params), headers or ()))
            conn.close()
            await conn.wait_closed()
        return out

    return asyncio.run(asyncio.wait_for(run(), 20))
