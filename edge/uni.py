"""``/connection/uni_sse``: a unidirectional stream for any ``EventSource``.

The token's ``channels`` claim names the channels. Every event carries the connection's stream
positions as its SSE ``id``, so a browser that reconnects by itself sends them back as
``Last-Event-ID`` and resumes with no gap (a Skyrelay extension; Centrifugo has none).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from skyrelay.edge import json_codec
from skyrelay.edge.attach import Attachment, until_done
from skyrelay.edge.auth import ANONYMOUS, ExpiredToken, InvalidToken
from skyrelay.edge.bodies import RequestError, json_object, read_body
from skyrelay.edge.client import Client
from skyrelay.edge.cors import cors_checked
from skyrelay.edge.emulation import STREAM_HEADERS, StreamSink
from skyrelay.edge.events import OUT_OF_REACH
from skyrelay.edge.node import NODE_KEY
from skyrelay.edge.outbox import FrameOutbox, Outgoing, http_chunk
from skyrelay.edge.serversubs import Positions, positions_from_subs
from skyrelay.protocol.codes import Disconnect, DisconnectCode

log = logging.getLogger("skyrelay.edge.uni")

# Seconds between SSE comment keepalives: under the usual 30-60 s proxy idle timeouts.
SSE_KEEPALIVE = 15.0
# Milliseconds EventSource waits before it reconnects (sent as ``retry``).
SSE_RETRY_MS = 500
# How often the handler checks that its client is still there, in seconds.
LIVENESS_CHECK = 1.0
_PUSH_PREFIX = b'{"push":'


def encode_positions(positions: Positions) -> bytes:
    """``channel=epoch:offset&...``, URL-quoted: safe in an SSE id line."""
    return "&".join(
        f"{quote(ch, safe='')}={epoch}:{offset}"
        for ch, (epoch, offset) in sorted(positions.items())
    ).encode()


def decode_positions(value: str | None) -> Positions:
    found: Positions = {}
    for channel, position in parse_qsl(value or "", keep_blank_values=True):
        epoch, _, offset = position.rpartition(":")
        if offset.isdigit():
            found[channel] = (epoch, int(offset))
    return found


def resume_positions(connect_request: dict[str, Any], last_event_id: str | None) -> Positions:
    """Where to resume each channel: ``Last-Event-ID`` first, then the request's ``subs``
    (``{channel: {recover, offset, epoch}}``). ValueError names a malformed field."""
    return {**positions_from_subs(connect_request.get("subs")), **decode_positions(last_event_id)}


def _bare(payload: bytes) -> bytes:
    """Unidirectional transports send the push object itself, not wrapped in ``push``."""
    if payload.startswith(_PUSH_PREFIX):
        return payload[len(_PUSH_PREFIX) : -1]
    return payload


def _event(data: bytes, event_id: bytes | None) -> bytes:
    head = b"id: " + event_id + b"\n" if event_id is not None else b""
    return http_chunk(head + b"data: " + data + b"\n\n")


def _plain_event(payload: bytes) -> bytes:
    return _event(_bare(payload), None)


class UniSseSink(StreamSink):
    """Bare pushes as SSE events; publications carry the connection's positions as their id."""

    __slots__ = ("positions",)

    def __init__(self, outbox: FrameOutbox) -> None:
        super().__init__(outbox, _plain_event, json_codec)
        self.positions: Positions = {}

    def send_with_position(self, payload: bytes) -> None:
        self._outbox.push(_event(_bare(payload), encode_positions(self.positions)))

    def deliver(self, message: Outgoing) -> None:
        for single in message.singles():
            self._deliver_one(single)

    def _deliver_one(self, message: Outgoing) -> None:
        position = message.position
        if position is None or not position[2]:
            super().deliver(message)
            return
        channel, epoch, offset = position
        self.positions[channel] = (epoch, offset)
        event_id = encode_positions(self.positions)
        frame = message.framed_as(
            ("uni", event_id), lambda: _event(_bare(message.payload), event_id)
        )
        self._outbox.push(frame)


async def connect(client: Client, sink: UniSseSink, token: str, resume: Positions) -> None:
    """Connect, subscribe the server-side channels (recovering from ``resume``), go live."""
    now = time.time()
    if token or not client.node.anonymous_allowed():
        await client.node.fetch_keys(token)
        try:
            credentials = client.node.verifier.verify_connection(token, now)
        except ExpiredToken:
            client.close(DisconnectCode.EXPIRED)
            return
        except InvalidToken:
            client.close(DisconnectCode.INVALID_TOKEN)
            return
    else:
        credentials = ANONYMOUS
    try:
        if client.node.events.full:
            raise Disconnect(DisconnectCode.SERVER_ERROR, OUT_OF_REACH)
        result = client.accept(credentials, now)
        joins = await client.join_server_side(credentials, resume)
        if client.closed:
            return
        channels = [join.name for join in joins]
        if not await client.recorded_connect(transport=client.transport_name, channels=channels):
            return
    except Disconnect as exc:
        client.close(exc.code, exc.reason)
        return
    for join in joins:
        sink.positions[join.name] = (join.channel.epoch, join.top)
    result["subs"] = {join.name: join.result for join in joins}
    sink.send_with_position(orjson.dumps({"push": {"connect": result}}))
    client.greeted()
    for join in joins:
        client.go_live(join)


@cors_checked
async def uni_sse_handler(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    settings = node.config.edge
    if request.method == "POST":
        raw = await read_body(request, settings.max_message_size, settings.http_body_timeout)
    else:
        raw = request.query.get("cf_connect", "{}").encode("utf-8", "surrogateescape")
    connect_request = json_object(raw or b"{}", "connect request")
    try:
        resume = resume_positions(connect_request, request.headers.get("Last-Event-ID"))
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    token = connect_request.get("token", "")
    response = EventSourceResponse(
        headers={**STREAM_HEADERS, **cors}, ping_interval=SSE_KEEPALIVE, allow_all_methods=True
    )
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return response
    attached = Attachment(node, transport)
    outbox = attached.outbox
    sink = UniSseSink(outbox)
    client = attached.client = Client(node, sink, "uni_sse", unidirectional=True)
    client.headers = node.backend.kept_headers(request.headers)
    outbox.push(http_chunk(b"retry: %d\n\n" % SSE_RETRY_MS))
    try:
        await connect(client, sink, token if isinstance(token, str) else "", resume)
        await until_done(sink.done, transport)
    finally:
        client.transport_closed()
        outbox.close()
        response.stop_streaming()
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response
