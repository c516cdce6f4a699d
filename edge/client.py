"""One client connection: its lifecycle (connect, commands in order, pings, close). Transport-
neutral: a transport adapter feeds it messages and gives it a ``Sink`` to write to; what it
does with channels is ``edge.subscribing``. It never touches a socket or the wire format
beyond the codec."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from skyrelay import VERSION
from skyrelay.config import Permission
from skyrelay.edge import backend_refresh, commands, json_codec, proxied, serversubs
from skyrelay.edge.auth import (
    ANONYMOUS,
    Credentials,
    ExpiredToken,
    InvalidToken,
)
from skyrelay.edge.events import OUT_OF_REACH
from skyrelay.edge.limits import TokenBucket
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.session import (
    SessionState,
    expiry_fields,
    token_param,
)
from skyrelay.edge.subscribing import Sink, Subscribing
from skyrelay.link.event_entries import CLOSED_CODE, CLOSED_REASON, CONNECT, DISCONNECT
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import (
    DISCONNECT_REASONS,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
)
from skyrelay.protocol.messages import Command, Pong
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.edge.client")


Handler = Callable[["Client", Command], Awaitable[dict[str, Any] | None]]


class Client(Subscribing):
    __slots__ = (
        "awaiting_pong",
        "codec",
        "deliver",
        "emulation",
        "expires_at",
        "headers",
        "id",
        "info",
        "lock",
        "meta",
        "node",
        "ping_slot",
        "publish_bucket",
        "refresh_proxy",
        "refreshing",
        "session",
        "sink",
        "state",
        "transport_name",
        "unidirectional",
        "user",
    )

    def __init__(
        self,
        node: EdgeNode,
        sink: Sink,
        transport_name: str,
        *,
        emulation: bool = False,
        unidirectional: bool = False,
        codec: ServerCodec = json_codec,
    ) -> None:
        super().__init__()
        # The wire format this connection speaks: JSON or protobuf.
        self.codec = codec
        # Its request headers that a proxy to the app's backend passes on (set by the
        # transport, lower-case names).
        self.headers: dict[str, str] = {}
        # The proxy that extends this connection when it expires (connected by the connect
        # proxy, with a refresh proxy configured): the client then refreshes nothing itself.
        self.refresh_proxy = ""
        self.refreshing = False
        # What the connect proxy said to keep with the connection (never sent to it).
        self.meta: dict[str, Any] | None = None
        self.id = str(uuid.uuid4())
        # websocket, http_stream, sse or uni_sse: a label of the connection metrics.
        self.transport_name = transport_name
        # Unidirectional transports: no commands, no pongs; subscriptions come from the token.
        self.unidirectional = unidirectional
        # Emulated bidirectional transports: later commands arrive by POST /emulation.
        self.emulation = emulation
        self.session = str(uuid.uuid4()) if emulation else ""
        # Emulated sessions get commands from concurrent POSTs; they run one message at a time.
        self.lock: asyncio.Lock | None = asyncio.Lock() if emulation else None
        self.node = node
        self.sink = sink
        # The hub hands publications straight to the sink: one call less per delivery.
        self.deliver: Callable[[Outgoing], None] = sink.deliver
        self.state = SessionState.CONNECTING
        self.user = ""
        self.info: Any = None
        self.expires_at = 0
        self.awaiting_pong = False
        self.ping_slot = -1
        # Publish rate limit, made on the first publish.
        self.publish_bucket: TokenBucket | None = None

    # Called by the hub and the ping wheel (synchronous, no await).

    def ping(self) -> None:
        if self.state is SessionState.CONNECTED:
            self.awaiting_pong = not self.unidirectional
            self.sink.send(self.codec.PING)

    def check_pong(self, now: float) -> None:
        delay = self.node.config.edge.expired_close_delay
        if self.awaiting_pong:
            self.close(DisconnectCode.NO_PONG)
        elif self.expires_at and self.refresh_proxy:
            if now > self.expires_at and not self.refreshing:
                self.refreshing = True
                spawn(backend_refresh.refresh(self, self.refresh_proxy))
        elif self.expires_at and now > self.expires_at + delay:
            self.close(DisconnectCode.EXPIRED)
        if self.sub_expiry and self.state is SessionState.CONNECTED:
            for channel, expires_at in list(self.sub_expiry.items()):
                proxy = self.namespace(channel).sub_refresh_proxy
                if proxy and now > expires_at:
                    del self.sub_expiry[channel]  # back once the backend answers
                    spawn(backend_refresh.sub_refresh(self, proxy, channel))
                elif now > expires_at + delay:
                    del self.sub_expiry[channel]
                    self.lost_channel(channel, UnsubscribeCode.EXPIRED, "subscription expired")

    # Driven by the transport.

    async def handle(self, data: bytes | str) -> None:
        """Run every command of one transport message, in order."""
        try:
            commands = self.codec.decode_commands(data)
        except Disconnect as exc:
            self.close(exc.code, exc.reason)
            return
        for command in commands:
            if self.state is SessionState.CLOSED:
                return
            if isinstance(command, Pong):
                self.awaiting_pong = False
                continue
            if not await self._run(command):
                return

    async def handle_serialized(self, data: bytes | str) -> None:
        """``handle``, one message at a time (emulated sessions)."""
        if self.lock is None:
            await self.handle(data)
            return
        async with self.lock:
            await self.handle(data)

    async def _run(self, command: Command) -> bool:
        """Run one command; False stops the rest of the message."""
        try:
            if self.state is SessionState.CONNECTING and command.method != "connect":
                raise Disconnect(DisconnectCode.BAD_REQUEST, "connect first")
            if isinstance(command.params.get("data"), bytes):
                # Protobuf lets a client send any bytes; channels and backend calls carry JSON.
                raise ReplyError(ErrorCode.BAD_REQUEST, "data must be JSON")
            handler = _HANDLERS[command.method]
            result = await handler(self, command)
            if result is not None and not self.closed:
                self.sink.send(self.codec.reply(command.id, command.method, result))
        except ReplyError as exc:
            self.node.metrics.command_errors.labels(code=str(exc.code)).inc()
            if not self.closed:
                self.sink.send(
                    self.codec.error_reply(command.id, exc.code, exc.message, exc.temporary)
                )
            return command.method != "connect"
        except Disconnect as exc:
            self.close(exc.code, exc.reason)
            return False
        except Exception:
            log.exception("command %s failed", command.method)
            self.close(DisconnectCode.SERVER_ERROR)
            return False
        return True

    def close(self, code: int, reason: str | None = None) -> None:
        if self.state is SessionState.CLOSED:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client disconnected", extra=self.log_ids(code=code))
        reason = reason or DISCONNECT_REASONS.get(code, "disconnect")
        self._cleanup(code, reason)
        self.node.metrics.disconnects.labels(code=str(code)).inc()
        self.sink.close(code, reason)

    def transport_closed(self) -> None:
        if self.state is not SessionState.CLOSED:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("client went away", extra=self.log_ids())
            self._cleanup()

    def log_ids(self, **more: Any) -> dict[str, Any]:
        """Fields that name this connection in a log line (never its token or payloads)."""
        return {"client": self.id, "user": self.user, **more}

    def _cleanup(self, code: int = CLOSED_CODE, reason: str = CLOSED_REASON) -> None:
        was_connected = self.state is SessionState.CONNECTED
        self.state = SessionState.CLOSED
        node = self.node
        if was_connected:
            node.events.record(DISCONNECT, self, code=code, reason=reason)
        node.wheel.remove(self)
        node.clients.pop(self.id, None)
        if self.session:
            node.sessions.pop(self.session, None)
        if was_connected:
            node.metrics.connections.labels(self.transport_name).dec()
            if self.user and self.user in node.user_connections:
                left = node.user_connections[self.user] - 1
                if left > 0:
                    node.user_connections[self.user] = left
                else:
                    del node.user_connections[self.user]
        subs, self.subs = self.subs, {}
        for channel in subs.values():
            if channel is not None:
                node.hub.presence_remove(channel, self.id)
                node.hub.release(channel, self)
                node.metrics.subscriptions.labels(self.transport_name).dec()

    # Commands.

    async def _connect(self, command: Command) -> None:
        if self.state is not SessionState.CONNECTING:
            raise Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
        try:
            resume = serversubs.positions_from_subs(command.params.get("subs"))
        except ValueError as exc:
            raise Disconnect(DisconnectCode.BAD_REQUEST, str(exc)) from None
        proxy = self.node.config.edge.connect_proxy
        data: Any = None
        if not token_param(command.params) and proxy:
            credentials, data = await self._connect_by_proxy(proxy, command.params)
        elif token_param(command.params) or not self.node.anonymous_allowed():
            await self.node.fetch_keys(command.params.get("token"))
            if self.state is not SessionState.CONNECTING:
                # Closed while the keys were fetched: never register a connection that is gone.
                raise Disconnect(DisconnectCode.BAD_REQUEST, "closed while connecting")
            credentials = self.verify(command, time.time(), ReplyError(ErrorCode.TOKEN_EXPIRED))
        else:
            credentials = ANONYMOUS
        self.node.events.check_room()
        result = self.accept(credentials, time.time())
        if data is not None:
            result["data"] = data
        joins = await self.join_server_side(credentials, resume)
        if self.closed:
            return
        if joins:
            result["subs"] = {join.name: join.result for join in joins}
        channels = [join.name for join in joins]
        if not await self.recorded_connect(transport=self.transport_name, channels=channels):
            return  # closed while the log took it
        self.sink.send(self.codec.reply(command.id, "connect", result))
        self.greeted()
        for join in joins:
            self.go_live(join)

    async def _connect_by_proxy(
        self, proxy: str, params: dict[str, Any]
    ) -> tuple[Credentials, Any]:
        """A connect without a token: the app's backend says who it is, from the request's
        cookies and headers (its ``data`` goes back in the connect reply)."""
        grant = await proxied.connect(self, proxy, params)
        if self.state is not SessionState.CONNECTING:
            raise Disconnect(DisconnectCode.BAD_REQUEST, "closed while connecting")
        if grant is None:
            if not self.node.anonymous_allowed():
                raise Disconnect(DisconnectCode.BAD_REQUEST, "the backend gave no credentials")
            return ANONYMOUS, None
        if grant.expire_at and grant.expire_at <= time.time():
            raise ReplyError(ErrorCode.EXPIRED)
        credentials = Credentials(grant.user, grant.expire_at, grant.info, grant.subs)
        self.refresh_proxy = self.node.config.edge.refresh_proxy
        self.meta = grant.meta
        return credentials, grant.data

    def accept(self, credentials: Credentials, now: float) -> dict[str, Any]:
        """The token is good: the connection is connected; returns the connect result."""
        node = self.node
        edge_limit = node.config.edge.max_connections
        if edge_limit and len(node.clients) >= edge_limit:
            raise Disconnect(DisconnectCode.TOO_MANY_REQUESTS, "edge at its connection limit")
        limit = node.config.edge.max_connections_per_user
        if credentials.user and limit:
            held = node.user_connections.get(credentials.user, 0)
            if held >= limit:
                raise Disconnect(DisconnectCode.CONNECTION_LIMIT)
            node.user_connections[credentials.user] = held + 1
        self.user = credentials.user
        self.info = credentials.info
        self.expires_at = credentials.expires_at
        self.state = SessionState.CONNECTED
        node = self.node
        node.clients[self.id] = self
        node.metrics.connections.labels(self.transport_name).inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client connected", extra=self.log_ids(transport=self.transport_name))
        result: dict[str, Any] = {
            "client": self.id,
            "version": VERSION,
            "ping": node.config.edge.ping_interval,
        }
        if not self.unidirectional:
            result["pong"] = True
        if not self.refresh_proxy:  # else the edge refreshes it, not the client
            result.update(expiry_fields(self.expires_at, now))
        if self.emulation:
            result["session"] = self.session
            result["node"] = node.id
            node.sessions[self.session] = self
        return result

    def verify(self, command: Command, now: float, expired: Exception) -> Credentials:
        """Verify the command's token: invalid disconnects with 3500, expired raises ``expired``."""
        try:
            return self.node.verifier.verify_connection(token_param(command.params), now)
        except ExpiredToken:
            raise expired from None
        except InvalidToken:
            raise Disconnect(DisconnectCode.INVALID_TOKEN) from None

    def greeted(self) -> None:
        """The connect reply went out: pings (and expiry checks) start only now, so that no
        ping ever comes before it however long the connect took."""
        if self.state is SessionState.CONNECTED:
            self.node.wheel.add(self)

    async def recorded_connect(self, **fields: Any) -> bool:
        """Record a connect and wait until it is in the event log: the client hears of it
        only then. A connection the log cannot take reconnects (3004); its disconnect follows
        the connect in the log. False if the connection closed meanwhile."""
        try:
            await self.node.events.confirmed(self.node.events.record(CONNECT, self, True, **fields))
        except ReplyError:
            raise Disconnect(DisconnectCode.SERVER_ERROR, OUT_OF_REACH) from None
        return self.state is SessionState.CONNECTED

    def subscribed(self, channel: str) -> bool:
        return self.subs.get(channel) is not None

    def permits(self, permission: Permission, channel: str) -> bool:
        """Does ``permission`` (a namespace's allow_*) let this connection act on ``channel``?"""
        return self.node.permits(permission, self.user, self.subscribed(channel))


def _core_handlers() -> dict[str, Handler]:
    return {
        "connect": Client._connect,
        "subscribe": Client._subscribe,
        "unsubscribe": Client._unsubscribe,
    }


_HANDLERS: dict[str, Handler] = {**_core_handlers(), **commands.HANDLERS}
