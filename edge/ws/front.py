"""The first bytes of every edge connection decide who serves it.

A plain WebSocket upgrade of ``/connection/websocket`` is answered here and the socket goes to
a ``WebSocketConnection`` (our own frame reader and writer). Every other connection, from the
first byte on, goes to aiohttp's HTTP server unchanged: the server API, the HTTP transports,
health, metrics, the status page, and any upgrade this path does not take (a foreign origin
to refuse, a malformed request to answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.edge.cors import origin_allowed
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.ws.connection import WebSocketConnection
from skyrelay.edge.ws.deflate import negotiate
from skyrelay.edge.ws.handshake import WEBSOCKET_PATH, accept_response, parse_upgrade

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

_PREFIX = b"GET " + WEBSOCKET_PATH
# Bytes of request head this path reads at most; a longer head goes to the HTTP server, which
# has its own limits and answers.
MAX_HEAD = 16 * 1024


class FrontProtocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_http", "_node", "_timeout", "_timer", "_transport")

    def __init__(self, node: EdgeNode, http: ProtocolFactory, header_timeout: float) -> None:
        self._node = node
        self._http = http
        self._timeout = header_timeout
        self._buffer = b""
        self._transport: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        # A client that never finishes its request head is cut, as the HTTP server does.
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        if buffer[: len(_PREFIX)] != _PREFIX[: len(buffer)]:
            self._hand_off(buffer)
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._hand_off(buffer)
            else:
                self._buffer = buffer
            return
        settings = self._node.config.edge
        upgrade = parse_upgrade(buffer[:end])
        if upgrade is None or not origin_allowed(upgrade.origin, settings.allowed_origins):
            self._hand_off(buffer)
            return
        self._stop_timer()
        self._node.metrics.websocket_upgrades.labels("own").inc()
        deflate = None
        if settings.websocket_compression and upgrade.extensions:
            deflate = negotiate(upgrade.extensions, settings.websocket_compression_window_bits)
        transport = self._transport
        transport.write(
            accept_response(
                upgrade.key,
                upgrade.format.subprotocol,
                deflate.response() if deflate is not None else None,
            )
        )
        codec = protobuf_codec if upgrade.format.protobuf else json_codec
        if deflate is not None:
            self._node.metrics.websocket_deflate.labels(codec.NAME).inc()
        connection = WebSocketConnection(self._node, transport, codec, deflate)
        if upgrade.headers:
            connection.client.headers = self._node.backend.kept_headers(upgrade.headers)
        transport.set_protocol(connection)
        rest = buffer[end + 4 :]
        if rest:
            connection.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _hand_off(self, buffer: bytes) -> None:
        self._stop_timer()
        protocol = self._http()
        assert isinstance(protocol, asyncio.Protocol)
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(buffer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def front_factory(
    node: EdgeNode, header_timeout: float
) -> Callable[[ProtocolFactory], ProtocolFactory]:
    """Wraps the HTTP server's protocol factory (see ``serve_until_stopped``)."""

    def wrap(http: ProtocolFactory) -> ProtocolFactory:
        return lambda: FrontProtocol(node, http, header_timeout)

    return wrap
