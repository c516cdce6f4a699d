"""Bidirectional emulation for centrifuge-js: ``/connection/http_stream`` and
``/connection/sse`` carry replies and pushes down; ``POST /emulation`` carries commands up.

HTTP streaming speaks protobuf when the opening request's body is ``application/octet-stream``
(each reply after its varint length, as on WebSocket); SSE is JSON only, as in Centrifugo.

Stream responses are chunked; fan-out writes pre-built chunks straight to the socket, like the
WebSocket transport writes pre-built frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.edge.attach import Attachment, until_done
from skyrelay.edge.bodies import RequestError, read_body
from skyrelay.edge.client import Client
from skyrelay.edge.cors import cors_checked
from skyrelay.edge.emulation_request import PROTOBUF_CONTENT_TYPE, is_protobuf, parse
from skyrelay.edge.httperrors import error_response
from skyrelay.edge.mesh import MESH_KEY
from skyrelay.edge.node import NODE_KEY
from skyrelay.edge.outbox import (
    SSE_EVENT,
    STREAM_LINE,
    FrameOutbox,
    Outgoing,
    http_chunk,
)
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import ErrorCode

# Largest POST /emulation body (the protocol's limit).
EMULATION_MAX_BODY = 64 * 1024

STREAM_HEADERS = {
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "X-Accel-Buffering": "no",
}


class StreamSink:
    """Writes one client's replies and pushes into a chunked HTTP response."""

    __slots__ = ("_codec", "_framing", "_outbox", "done")

    def __init__(
        self, outbox: FrameOutbox, framing: Callable[[bytes], bytes], codec: ServerCodec
    ) -> None:
        self._outbox = outbox
        self._framing = framing
        self._codec = codec
        self.done = asyncio.Event()

    def send(self, payload: bytes) -> None:
        self._outbox.push(self._framing(payload))

    def deliver(self, message: Outgoing) -> None:
        self._outbox.push(message.in_codec(self._codec).framed(self._framing))

    def close(self, code: int, reason: str) -> None:
        # Streams end with a disconnect push (no close frame to carry the code).
        if not self._outbox.closed:
            self.send(self._codec.disconnect_push(code, reason))
            self._outbox.flush()
            self._outbox.close()
        self.done.set()


async def _stream(
    request: web.Request,
    cors: dict[str, str],
    commands: bytes,
    framing: Callable[[bytes], bytes],
    content_type: str,
    codec: ServerCodec = json_codec,
) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    if not commands:
        raise RequestError(400, "connect command required")
    response = web.StreamResponse(status=200, headers={**STREAM_HEADERS, **cors})
    response.content_type = content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return response
    attached = Attachment(node, transport)
    outbox = attached.outbox
    sink = StreamSink(outbox, framing, codec)
    transport_name = "sse" if framing is SSE_EVENT else "http_stream"
    client = attached.client = Client(node, sink, transport_name, emulation=True, codec=codec)
    client.headers = node.backend.kept_headers(request.headers)
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


async def opening_body(request: web.Request) -> bytes:
    """The commands that open a stream: at most one WebSocket message's worth."""
    settings = request.app[NODE_KEY].config.edge
    return await read_body(request, settings.max_message_size, settings.http_body_timeout)


@cors_checked
async def http_stream_handler(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    body = await opening_body(request)
    if is_protobuf(request.headers.get("Content-Type", "")):
        return await _stream(request, cors, body, http_chunk, PROTOBUF_CONTENT_TYPE, protobuf_codec)
    return await _stream(request, cors, body, STREAM_LINE, "application/json")


@cors_checked
async def sse_handler(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    if request.method == "POST":
        commands = await opening_body(request)
    else:
        connect = request.query.get("cf_connect")
        if connect is None:
            raise RequestError(400, "cf_connect query parameter required")
        # Query bytes that are not UTF-8 arrive surrogate-escaped; the codec refuses them.
        commands = connect.encode("utf-8", "surrogateescape")
        if len(commands) > request.app[NODE_KEY].config.edge.max_message_size:
            raise RequestError(413, "cf_connect too large")
    return await _stream(request, cors, commands, SSE_EVENT, "text/event-stream")


@cors_checked
async def emulation_handler(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    """Commands for an emulated session: 204 once handed over, 404 for another node."""
    node = request.app[NODE_KEY]
    body = await read_body(request, EMULATION_MAX_BODY, node.config.edge.http_body_timeout)
    try:
        emulated = parse(body)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    if emulated.node != node.id:
        return await _forward(request, emulated.node, body, cors)
    client = node.sessions.get(emulated.session)
    if client is not None:
        await client.handle_serialized(emulated.data)
    return web.Response(status=204, headers=cors)


async def _forward(
    request: web.Request, target: str, body: bytes, cors: dict[str, str]
) -> web.Response:
    """A session of another worker of this edge goes to that worker; any other node is 404."""
    mesh = request.app.get(MESH_KEY)
    index = mesh.spec.index_of(target) if mesh is not None else None
    if mesh is None or index is None:
        return error_response(404, ErrorCode.METHOD_NOT_FOUND, f"unknown node {target!r}", cors)
    if not await mesh.forward_emulation(index, body):
        # The owner is gone (its sessions with it): the client reconnects.
        message = f"node {target!r} unreachable"
        return error_response(404, ErrorCode.METHOD_NOT_FOUND, message, cors)
    return web.Response(status=204, headers=cors)
