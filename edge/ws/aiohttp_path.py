"""The bidirectional WebSocket transport, ``/connection/websocket``, on aiohttp's server: the
upgrades the edge's own path leaves to it (see ``edge.ws.front``). JSON in text frames, or
protobuf in binary frames."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.edge.attach import Attachment
from skyrelay.edge.client import Client
from skyrelay.edge.cors import origin_allowed, refused
from skyrelay.edge.node import NODE_KEY
from skyrelay.edge.outbox import FrameOutbox, Outgoing, WriteTransport
from skyrelay.edge.ws.deflate import MAX_WINDOW_BITS
from skyrelay.edge.ws.framing import WsFraming
from skyrelay.edge.ws.guard import keep_reading_after_close, linger, pending_bytes, require_masking
from skyrelay.edge.ws.handshake import wire_format
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import DisconnectCode
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.edge.ws")

# Seconds to wait for the client's close frame after ours before the socket is dropped.
CLOSE_TIMEOUT = 2.0
# aiohttp's own writes (close frames, pongs) only; data bypasses its writer.
WRITER_LIMIT = 64 * 1024


class WebSocketSink:
    __slots__ = ("_closing", "_framing", "_outbox", "_transport", "_ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: WriteTransport,
        outbox: FrameOutbox,
        framing: WsFraming,
    ) -> None:
        self._ws = ws
        self._framing = framing
        self._transport = transport
        self._outbox = outbox
        self._closing = False

    def send(self, payload: bytes) -> None:
        self._outbox.push(self._framing.frame(payload))

    def deliver(self, message: Outgoing) -> None:
        self._outbox.push(self._framing.message_frame(message))

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        slow = self._outbox.closed
        self._outbox.flush()
        self._outbox.close()
        spawn(self._ws.close(code=code, message=reason.encode()))
        if slow:
            # A client that stopped reading will not read our close frame either.
            abort = getattr(self._transport, "abort", None)
            if abort is not None:
                asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, abort)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    settings = node.config.edge
    if not origin_allowed(request.headers.get("Origin"), settings.allowed_origins):
        return refused(request)
    chosen = wire_format(request.headers.get("Sec-WebSocket-Protocol"), request.query_string)
    codec: ServerCodec = protobuf_codec if chosen.protobuf else json_codec
    ws = web.WebSocketResponse(
        protocols=(chosen.subprotocol,) if chosen.subprotocol else (),
        timeout=CLOSE_TIMEOUT,
        autoping=True,
        heartbeat=None,
        compress=settings.websocket_compression,
        max_msg_size=settings.max_message_size,
        writer_limit=WRITER_LIMIT,
    )
    early = pending_bytes(request)
    await ws.prepare(request)
    node.metrics.websocket_upgrades.labels("aiohttp").inc()
    require_masking(request, ws, early)
    keep_reading_after_close(request, ws)
    transport = request.transport
    if transport is None:
        return ws
    attached = Attachment(node, transport)
    outbox = attached.outbox
    # Our frames bypass aiohttp's writer; where it agreed on deflate with the full window, they
    # are compressed by the edge's shared compressor (each message on its own).
    framing = node.framings.get(codec, ws.compress == MAX_WINDOW_BITS)
    if ws.compress:
        node.metrics.websocket_deflate.labels(codec.NAME).inc()
    sink = WebSocketSink(ws, transport, outbox, framing)
    client = attached.client = Client(node, sink, "websocket", codec=codec)
    client.headers = node.backend.kept_headers(request.headers)
    stale = asyncio.get_running_loop().call_later(settings.connect_timeout, close_stale, client)
    failed = False
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await client.handle(msg.data)
            elif msg.type is WSMsgType.ERROR:
                failed = True
                break
    finally:
        stale.cancel()
        client.transport_closed()
        outbox.close()
    if failed:
        await linger(transport)
    return ws


def close_stale(client: Client) -> None:
    """The connect timeout passed: close a connection that has not connected."""
    if client.state.value == "connecting":
        client.close(DisconnectCode.STALE)
