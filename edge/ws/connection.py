"""The edge's own WebSocket connection: an ``asyncio.Protocol`` that owns the socket after the
opening handshake, reads frames with ``FrameReader`` and writes through the client's outbox.

An idle connection is this object, its ``Client``, its outbox and the transport: no HTTP
request or response objects, no reader queue, no task. A task runs only while the client's
messages are being handled, and ends when none are waiting. This is what keeps an idle
connection small (see ``skyrelay bench connections``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from typing import Any

from skyrelay.edge import json_codec
from skyrelay.edge.attach import Attachment
from skyrelay.edge.client import Client
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.ws.aiohttp_path import CLOSE_TIMEOUT, close_stale
from skyrelay.edge.ws.deflate import Agreement, Decompressor
from skyrelay.edge.ws.reader import OP_PONG, FrameReader, Kind, close_frame, control_frame
from skyrelay.protocol.codec import ServerCodec
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.edge.ws")

# Client messages queued while earlier ones are handled; past this the socket is not read
# until the queue drains (TCP flow control then holds the client back).
INBOX_LIMIT = 64


class WebSocketConnection(asyncio.Protocol):
    """One client's socket from the end of the handshake to its close."""

    __slots__ = (
        "_attached",
        "_client",
        "_close_timer",
        "_closing",
        "_framing",
        "_handler",
        "_inbox",
        "_lingering",
        "_node",
        "_plain",
        "_reader",
        "_stale",
        "_transport",
    )

    def __init__(
        self,
        node: EdgeNode,
        transport: Any,
        codec: ServerCodec = json_codec,
        deflate: Agreement | None = None,
    ) -> None:
        self._transport = transport
        limit = node.config.edge.max_message_size
        decompressor = Decompressor(deflate, limit) if deflate is not None else None
        self._reader = FrameReader(limit, decompressor)
        self._attached = Attachment(node, transport)
        self._framing = node.framings.get(codec, deflate is not None)
        self._plain = self._framing.plain  # read on every delivery: kept in a slot
        self._client = self._attached.client = Client(node, self, "websocket", codec=codec)
        # Client messages waiting to be handled; an int is the client's close frame (its
        # code), answered in its turn, after the messages that came before it.
        self._inbox: collections.deque[bytes | str | int] | None = None
        self._handler: asyncio.Task[None] | None = None
        self._closing = False
        self._lingering = False
        self._close_timer: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self._stale: asyncio.TimerHandle | None = loop.call_later(
            node.config.edge.connect_timeout, self._close_stale
        )
        self._node = node
        node.websockets.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Kernel keepalive probes find peers that vanished without a FIN (half-open).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    @property
    def client(self) -> Client:
        return self._client

    # The Sink the client writes to.

    def send(self, payload: bytes) -> None:
        self._attached.outbox.push(self._framing.frame(payload))

    def deliver(self, message: Outgoing) -> None:
        # The hottest line of a fan-out: plain JSON reads the message's own frame slot.
        if self._plain:
            self._attached.outbox.push(message.ws_frame)
        else:
            self._attached.outbox.push(message.frame_for(self._framing))

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then our close frame; drop the socket if no answer comes."""
        if self._closing:
            return
        self._closing = True
        outbox = self._attached.outbox
        outbox.flush()
        outbox.close()
        transport = self._transport
        if not transport.is_closing():
            transport.write(close_frame(code, reason))
        self._abort_later()

    # asyncio.Protocol.

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused message: read and dropped
        for event in self._reader.feed(data):
            kind = event.kind
            if kind is Kind.TEXT or kind is Kind.BINARY:
                self._queue(event.data)
            elif kind is Kind.PING:
                payload = event.data if isinstance(event.data, bytes) else b""
                self._attached.outbox.push(control_frame(OP_PONG, payload))
            elif kind is Kind.CLOSE:
                if self._handler is not None or self._inbox:
                    self._queue(event.code)  # after the messages before it
                else:
                    self._answer_close(event.code)
            elif kind is Kind.FAIL:
                log.debug("websocket protocol error: %s", event.data)
                self._client.close(event.code, str(event.data))
                self.close(event.code, str(event.data))  # if the client was closed already
                self._linger()
                return

    def eof_received(self) -> bool | None:
        return None  # close the socket: a client that ends its side is gone

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stale, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._stale = self._close_timer = None
        self._inbox = None
        websockets = self._node.websockets
        websockets.discard(self)
        if not websockets:
            self._node.websockets_gone.set()
        self._client.transport_closed()
        self._attached.outbox.close()

    # Internals.

    def _queue(self, data: bytes | str | int) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = collections.deque()
        inbox.append(data)
        if len(inbox) >= INBOX_LIMIT:
            self._transport.pause_reading()
        if self._handler is None:
            self._handler = spawn(self._handle_inbox())

    async def _handle_inbox(self) -> None:
        transport = self._transport
        try:
            while self._inbox:
                data = self._inbox.popleft()
                if isinstance(data, int):
                    self._answer_close(data)
                    break
                if len(self._inbox) == INBOX_LIMIT - 1 and not transport.is_closing():
                    transport.resume_reading()
                await self._client.handle(data)
        finally:
            self._handler = None
            self._inbox = None
            if not transport.is_closing():
                transport.resume_reading()  # whatever ended the loop, never stay paused

    def _answer_close(self, code: int) -> None:
        """The client closed: echo its close (unless ours is out already), then hang up."""
        if not self._closing:
            self._closing = True
            self._client.transport_closed()
            self._attached.outbox.flush()
            self._attached.outbox.close()
            self._transport.write(close_frame(code))
        self._transport.close()
        self._abort_later()  # a client that does not read would hold the socket

    def _linger(self) -> None:
        """Nothing more is handled (RFC 6455 7.1.7), but what the client still sends is read and
        dropped, and our side ends after the close frame: closing a socket with unread data
        makes the kernel answer with a reset, and a client in the middle of sending a huge
        message would lose the close frame (1009) that says why. The abort timer bounds it."""
        self._lingering = True
        transport = self._transport
        if transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()
        else:
            transport.close()

    def _abort_later(self) -> None:
        if self._close_timer is None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT, self._transport.abort)

    def _close_stale(self) -> None:
        self._stale = None
        close_stale(self._client)
