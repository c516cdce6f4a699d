"""What every connection on one edge process shares."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from skyrelay.config import ClusterConfig, Permission, ProxyConfig
from skyrelay.edge import census
from skyrelay.edge.auth import TokenVerifier
from skyrelay.edge.backend import RPC_URL_PROXY, Backend
from skyrelay.edge.events import EventRecorder
from skyrelay.edge.hub import Hub
from skyrelay.edge.keys import JwksKeys
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.outbox import Flusher
from skyrelay.edge.pinger import PingWheel
from skyrelay.edge.router import Router
from skyrelay.edge.session import allowed
from skyrelay.edge.ws.deflate import Compressor
from skyrelay.edge.ws.framing import Framings
from skyrelay.protocol.codes import DisconnectCode


class Closable(Protocol):
    def close(self, code: int, reason: str) -> None: ...  # pragma: no cover


class Connection(census.Connection, Protocol):
    """What the process holds of a connected client (``edge.client.Client``)."""

    def close(self, code: int, reason: str | None = None) -> None: ...  # pragma: no cover

    async def handle_serialized(self, data: bytes | str) -> None:
        """Run a message of commands, one message at a time (emulated sessions)."""


@dataclass(slots=True)
class EdgeNode:
    id: str
    config: ClusterConfig
    verifier: TokenVerifier
    router: Router
    hub: Hub
    flusher: Flusher
    wheel: PingWheel
    metrics: EdgeMetrics
    jwks: JwksKeys | None = None
    # HTTP client for JWKS and RPC calls, set when the server starts.
    http: aiohttp.ClientSession | None = None
    clients: dict[str, Connection] = field(default_factory=dict)
    # Connections per user, for max_connections_per_user.
    user_connections: dict[str, int] = field(default_factory=dict)
    # Connections on the edge's own WebSocket path (edge/ws/connection.py), closed at shutdown.
    websockets: set[Closable] = field(default_factory=set)
    # Set whenever the last of them has closed.
    websockets_gone: asyncio.Event = field(default_factory=asyncio.Event)
    # Emulation sessions (http_stream, sse) by session id, for POST /emulation.
    sessions: dict[str, Connection] = field(default_factory=dict)
    # This process, in the server API's ``info``: a unique id and when it started.
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)
    # WebSocket framings, with the process's one compressor (permessage-deflate).
    framings: Framings = field(init=False)
    # The app's backend, through its proxies.
    backend: Backend = field(init=False)
    # Connection and channel events, on their way to the event log (``[events]``).
    events: EventRecorder = field(init=False)

    def __post_init__(self) -> None:
        settings = self.config.edge
        compressor = Compressor(
            settings.websocket_compression_level, settings.websocket_compression_min_size
        )
        self.framings = Framings(compressor)
        self.backend = Backend(self.config.proxies, self.metrics)
        self.events = EventRecorder(self.router, self._drop_clients)
        if settings.rpc_url and not settings.rpc_proxy:
            # The older single setting: a proxy of its own, with its timeout.
            rpc = ProxyConfig(settings.rpc_url, settings.rpc_timeout, breaker_failures=5)
            self.backend.add(RPC_URL_PROXY, rpc)

    def _drop_clients(self) -> None:
        """The event log reported this process gone: its clients reconnect as new ones."""
        for client in list(self.clients.values()):
            client.close(DisconnectCode.INSUFFICIENT_STATE)

    async def fetch_keys(self, token: Any) -> None:
        """Tokens signed with a key from the JWKS URL: make sure that key is known."""
        if self.jwks is not None and self.http is not None and isinstance(token, str):
            await self.jwks.ensure(token, self.http)

    def anonymous_allowed(self) -> bool:
        """May a connection without a token connect, as anonymous?"""
        settings = self.config.edge
        return settings.allow_anonymous_connect_without_token or settings.insecure

    def permits(self, permission: Permission, user: str, subscribed: bool) -> bool:
        """Does ``permission`` (a namespace's allow_*) let ``user`` act? Always in insecure
        mode."""
        return self.config.edge.insecure or allowed(permission, user, subscribed)


NODE_KEY = web.AppKey("node", EdgeNode)
