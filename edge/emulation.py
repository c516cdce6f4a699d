"""Bidirectional emulation for centrifuge-js: ``/connection/http_stream`` and
``/connection/sse`` carry replies and pushes down; ``POST /emulation`` carries commands up.

Stream responses are chunked; fan-out writes pre-built chunks straight to the socket, like the
WebSocket transport writes pre-built frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
from aiohttp import web

from edge import protocol
from edge.attach import Attachment, until_done
from edge.client import Client
from edge.cors import cors_headers, refused
from edge.node import NODE_KEY
from edge.outbox import (
    SSE_EVENT,
    STREAM_LINE,
    FrameOutbox,
    Outgoing,
    http_chunk,
)

# Largest POST /emulation body (the protocol's limit).
EMULATION_MAX_BODY = 64 * 1024

STREAM_HEADERS = {
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "X-Accel-Buffering": "no",
}


class StreamSink:
    """Writes one client's replies and pushes into a chunked HTTP response."""

    __slots__ = ("_framing", "_outbox", "done")

    def __init__(self, outbox: FrameOutbox, framing: Callable[[bytes], bytes]) -> None:
        self._outbox = outbox
        self._framing = framing
        self.done = asyncio.Event()

    def send(self, payload: bytes) -> None:
        self._outbox.push(self._framing(payload))

    def deliver(self, message: Outgoing) -> None:
        self._outbox.push(message.framed(self._framing))

    def close(self, code: int, reason: str) -> None:
        # Streams end with a disconnect push (no close frame to carry the code).
        if not self._outbox.closed:
            self.send(protocol.disconnect_push(code, reason))
            self._outbox.flush()
            self._outbox.close()
        self.done.set()


async def _stream(
    request: web.Request, commands: bytes, framing: Callable[[bytes], bytes], content_type: str
) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    cors = cors_headers(request)
    if cors is None:
        return refused(request)
    settings = node.config.edge
    if not commands:
        return web.json_response({"error": "connect command required"}, status=400, headers=cors)
    if len(commands) > settings.max_message_size:
        return web.json_response({"error": "message too large"}, status=413, headers=cors)
    response = web.StreamResponse(status=200, headers={**STREAM_HEADERS, **cors})
    response.content_type = content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return response
    attached = Attachment(node, transport)
    outbox = attached.outbox
    sink = StreamSink(outbox, framing)
    transport_name = "sse" if framing is SSE_EVENT else "http_stream"
    client = attached.client = Client(node, sink, transport_name, emulation=True)
    if framing is SSE_EVENT:
        outbox.push(http_chunk(b"\r\n"))
    await client.handle_serialized(commands)
    if client.state.value == "connecting":
        # The connect failed with an error reply (say 109): end the stream, the client
        # reconnects. A refused token has already closed it with its disconnect push.
        outbox.flush()
        sink.done.set()
    try:
        await until_done(sink.done, transport)
    finally:
        client.transport_closed()
        outbox.close()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def http_stream_handler(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return await _stream(request, body, STREAM_LINE, "application/json")


async def sse_handler(request: web.Request) -> web.StreamResponse:
    if request.method == "POST":
        commands = await request.read()
    else:
        connect = request.query.get("cf_connect")
        if connect is None:
            return web.json_response({"error": "cf_connect query parameter required"}, status=400)
        commands = connect.encode()
    return await _stream(request, commands, SSE_EVENT, "text/event-stream")


async def emulation_handler(request: web.Request) -> web.StreamResponse:
    """Commands for an emulated session: 204 once handed over, 404 for another node."""
    node = request.app[NODE_KEY]
    cors = cors_headers(request)
    if cors is None:
        return refused(request)
    body = await request.content.read(EMULATION_MAX_BODY + 1)
    if len(body) > EMULATION_MAX_BODY:
        return web.json_response({"error": "body too large"}, status=413, headers=cors)
    try:
        message = orjson.loads(body)
        session, target, data = message["session"], message["node"], message["data"]
        if not all(isinstance(v, str) for v in (session, target, data)):
            raise TypeError
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.json_response(
            {"error": "body must be {session, node, data} strings"}, status=400, headers=cors
        )
    if target != node.id:
        return web.json_response({"error": "unknown node"}, status=404, headers=cors)
    client = node.sessions.get(session)
    if client is not None:
        await client.handle_serialized(data.encode())
    return web.Response(status=204, headers=cors)
