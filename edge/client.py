"""One client connection: runs commands in order and talks to the hub. Transport-neutral:
a transport adapter feeds it messages and gives it a ``Sink`` to write to."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge import commands, protocol
from edge.auth import Credentials, ExpiredToken, InvalidToken, TokenMismatch
from edge.codes import (
    DISCONNECT_REASONS,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
)
from edge.hub import Channel
from edge.limits import TokenBucket
from edge.node import EdgeNode
from edge.outbox import Outgoing
from edge.recovery import RecoveryOutcome, decide_recovery
from edge.session import (
    SessionState,
    SubscribeOptions,
    allowed,
    channel_param,
    expiry_fields,
    subscribe_options,
    subscribe_result,
    token_param,
)
from skyrelay import VERSION
from skyrelay.config import NamespaceConfig

log = logging.getLogger("skyrelay.edge.client")

# Channels whose name starts with this need a subscription token.
PRIVATE_PREFIX = "$"


class Sink(Protocol):
    def send(self, payload: bytes) -> None: ...  # pragma: no cover
    def deliver(self, message: Outgoing) -> None: ...  # pragma: no cover
    def close(self, code: int, reason: str) -> None: ...  # pragma: no cover


Handler = Callable[["Client", protocol.Command], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Join:
    """A subscription on its way: the result to send, then ``go_live``."""

    name: str
    channel: Channel
    result: dict[str, Any]
    # Stream offset the result stands at; buffered publications above it follow it.
    top: int
    outcome: RecoveryOutcome | None


class Client:
    __slots__ = (
        "awaiting_pong",
        "deliver",
        "emulation",
        "expires_at",
        "id",
        "info",
        "join_leave",
        "lock",
        "node",
        "ping_slot",
        "publish_bucket",
        "session",
        "sink",
        "state",
        "sub_expiry",
        "subs",
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
    ) -> None:
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
        # channel -> hub channel; None while the upstream subscription is being set up.
        self.subs: dict[str, Channel | None] = {}
        self.awaiting_pong = False
        self.ping_slot = -1
        # Publish rate limit, made on the first publish.
        self.publish_bucket: TokenBucket | None = None
        # Channels whose join and leave events this client asked for.
        self.join_leave: set[str] | None = None
        # channel -> expiry of its subscription token (private channels only), when set.
        self.sub_expiry: dict[str, int] | None = None

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    # Called by the hub and the ping wheel (synchronous, no await).

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        if self.subs.pop(channel, None) is not None:
            self.node.metrics.subscriptions.labels(self.transport_name).dec()
            self.sink.send(protocol.unsubscribe_push(channel, code, reason))

    def ping(self) -> None:
        if self.state is SessionState.CONNECTED:
            self.awaiting_pong = not self.unidirectional
            self.sink.send(protocol.PING)

    def check_pong(self, now: float) -> None:
        if self.awaiting_pong:
            self.close(DisconnectCode.NO_PONG)
        elif self.expires_at and now > self.expires_at + self.node.config.edge.expired_close_delay:
            self.close(DisconnectCode.EXPIRED)
        elif self.sub_expiry:
            for channel, expires_at in list(self.sub_expiry.items()):
                if now > expires_at + self.node.config.edge.expired_close_delay:
                    del self.sub_expiry[channel]
                    self.lost_channel(channel, UnsubscribeCode.EXPIRED, "subscription expired")

    def set_sub_expiry(self, channel: str, expires_at: int) -> None:
        if expires_at:
            if self.sub_expiry is None:
                self.sub_expiry = {}
            self.sub_expiry[channel] = expires_at
        elif self.sub_expiry is not None:
            self.sub_expiry.pop(channel, None)

    # Driven by the transport.

    async def handle(self, data: bytes | str) -> None:
        """Run every command of one transport message, in order."""
        try:
            commands = protocol.decode_commands(data)
        except Disconnect as exc:
            self.close(exc.code, exc.reason)
            return
        for command in commands:
            if self.state is SessionState.CLOSED:
                return
            if isinstance(command, protocol.Pong):
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

    async def _run(self, command: protocol.Command) -> bool:
        """Run one command; False stops the rest of the message."""
        try:
            if self.state is SessionState.CONNECTING and command.method != "connect":
                raise Disconnect(DisconnectCode.BAD_REQUEST, "connect first")
            handler = _HANDLERS[command.method]
            result = await handler(self, command)
            if result is not None and not self.closed:
                self.sink.send(protocol.reply(command.id, command.method, result))
        except ReplyError as exc:
            self.node.metrics.command_errors.labels(code=str(exc.code)).inc()
            if not self.closed:
                self.sink.send(
                    protocol.error_reply(command.id, exc.code, exc.message, exc.temporary)
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
        self._cleanup()
        self.node.metrics.disconnects.labels(code=str(code)).inc()
        self.sink.close(code, reason or DISCONNECT_REASONS.get(code, "disconnect"))

    def transport_closed(self) -> None:
        if self.state is not SessionState.CLOSED:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("client went away", extra=self.log_ids())
            self._cleanup()

    def log_ids(self, **more: Any) -> dict[str, Any]:
        """Fields that name this connection in a log line (never its token or payloads)."""
        return {"client": self.id, "user": self.user, **more}

    def _cleanup(self) -> None:
        was_connected = self.state is SessionState.CONNECTED
        self.state = SessionState.CLOSED
        node = self.node
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

    async def _connect(self, command: protocol.Command) -> dict[str, Any]:
        if self.state is not SessionState.CONNECTING:
            raise Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
        await self.fetch_keys(command.params.get("token"))
        if self.state is not SessionState.CONNECTING:
            # Closed while the keys were fetched: never register a connection that is gone.
            raise Disconnect(DisconnectCode.BAD_REQUEST, "closed while connecting")
        now = time.time()
        credentials = self.verify(command, now, ReplyError(ErrorCode.TOKEN_EXPIRED))
        return self.accept(credentials, now)

    async def fetch_keys(self, token: Any) -> None:
        """Tokens signed with a key from the JWKS URL: make sure that key is known."""
        node = self.node
        if node.jwks is not None and node.http is not None and isinstance(token, str):
            await node.jwks.ensure(token, node.http)

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
        node.wheel.add(self)
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
        result.update(expiry_fields(self.expires_at, now))
        if self.emulation:
            result["session"] = self.session
            result["node"] = node.id
            node.sessions[self.session] = self
        return result

    def verify(self, command: protocol.Command, now: float, expired: Exception) -> Credentials:
        """Verify the command's token: invalid disconnects with 3500, expired raises ``expired``."""
        try:
            return self.node.verifier.verify_connection(token_param(command.params), now)
        except ExpiredToken:
            raise expired from None
        except InvalidToken:
            raise Disconnect(DisconnectCode.INVALID_TOKEN) from None

    def namespace(self, channel: str) -> NamespaceConfig:
        ns = self.node.config.namespace(channel)
        if ns is None or not ns.name_allowed(channel):
            raise ReplyError(ErrorCode.UNKNOWN_CHANNEL)
        return ns

    def subscribed(self, channel: str) -> bool:
        return self.subs.get(channel) is not None

    async def _subscribe(self, command: protocol.Command) -> dict[str, Any] | None:
        channel = channel_param(command.params)
        ns = self.namespace(channel)
        if not allowed(ns.allow_subscribe, self.user, True):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        if channel in self.subs:
            raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
        settings = self.node.config.edge
        if len(self.subs) >= settings.max_subscriptions_per_connection:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED)
        options = subscribe_options(ns, command.params)
        grant_expiry = await self._check_private(channel, command)
        join = await self.join(channel, options)
        if join is None:
            return None
        if ns.join_leave and command.params.get("join_leave") is True:
            if self.join_leave is None:
                self.join_leave = set()
            self.join_leave.add(channel)
        if grant_expiry:
            self.set_sub_expiry(channel, grant_expiry)
            join.result.update(expiry_fields(grant_expiry, time.time()))
        if join.outcome is not None and not join.outcome.recovered and options.reject_unrecovered:
            self.node.hub.finish_join(join.channel, self)
            self._drop(channel, join.channel)
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        self.sink.send(protocol.reply(command.id, "subscribe", join.result))
        self.go_live(join)
        return None

    async def _check_private(self, channel: str, command: protocol.Command) -> int:
        """Private channels (``$`` prefix) need a subscription token; returns its expiry."""
        if not channel.startswith(PRIVATE_PREFIX):
            return 0
        token = command.params.get("token")
        if not isinstance(token, str) or not token:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "subscription token required")
        await self.fetch_keys(token)
        try:
            grant = self.node.verifier.verify_subscription(
                token, channel, self.user, self.id, time.time()
            )
        except ExpiredToken:
            raise ReplyError(ErrorCode.TOKEN_EXPIRED) from None
        except InvalidToken:
            raise ReplyError(ErrorCode.PERMISSION_DENIED) from None
        except TokenMismatch:
            raise Disconnect(DisconnectCode.INVALID_TOKEN) from None
        return grant.expires_at

    async def join(self, channel: str, options: SubscribeOptions) -> Join | None:
        """Hold ``channel`` upstream and work out the subscribe result. Publications are
        buffered for this client until ``go_live``; None if the client closed meanwhile."""
        hub = self.node.hub
        self.subs[channel] = None
        try:
            held = await hub.acquire(channel)
        except BaseException:
            self.subs.pop(channel, None)
            raise
        if self.closed:
            hub.release(held, self)
            return None
        self.subs[channel] = held
        self.node.metrics.subscriptions.labels(self.transport_name).inc()
        hub.start_join(held, self)
        if not options.recover:
            result = subscribe_result(options, held.epoch, held.offset)
            return Join(channel, held, result, held.offset, None)
        limit = self.node.config.edge.recovery_max_publications
        try:
            page = await hub.read(held, options.offset, limit + 1)
        except ReplyError:
            if self.subs.get(channel) is held:
                self._drop(channel, held)
            raise
        if self.state is SessionState.CLOSED:  # closed while the history was read
            return None
        if self.subs.get(channel) is not held:
            raise ReplyError(ErrorCode.INTERNAL, "channel moved, retry", temporary=True)
        top = int(page.get("offset", 0))
        outcome = decide_recovery(
            options.offset,
            options.epoch,
            page.get("publications") or [],
            str(page.get("epoch", "")),
            top,
            limit,
        )
        self.node.metrics.recoveries.labels(
            outcome="recovered" if outcome.recovered else "failed"
        ).inc()
        return Join(channel, held, subscribe_result(options, "", 0, outcome), top, outcome)

    def go_live(self, join: Join) -> None:
        """After the result went out: send what was buffered past it, then deliver live."""
        ns = self.node.config.namespace(join.name)
        if ns is not None and ns.presence:
            self.node.hub.presence_add(join.channel, self.client_info())
        for pub in self.node.hub.finish_join(join.channel, self):
            offset = pub.get("offset", 0)
            if offset == 0 or offset > join.top:
                self.deliver_pub(join, pub)

    def deliver_pub(self, join: Join, pub: dict[str, Any]) -> None:
        position = (join.name, join.channel.epoch, pub.get("offset", 0))
        self.sink.deliver(Outgoing(protocol.pub_push(join.name, pub), position))

    def wants_join_leave(self, channel: str) -> bool:
        return self.join_leave is not None and channel in self.join_leave

    def client_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"user": self.user, "client": self.id}
        if self.info is not None:
            info["conn_info"] = self.info
        return info

    def _drop(self, channel: str, held: Channel) -> None:
        self.node.hub.presence_remove(held, self.id)
        if self.join_leave is not None:
            self.join_leave.discard(channel)
        self.subs.pop(channel, None)
        self.node.hub.release(held, self)
        self.node.metrics.subscriptions.labels(self.transport_name).dec()

    async def _unsubscribe(self, command: protocol.Command) -> dict[str, Any]:
        channel = channel_param(command.params)
        held = self.subs.get(channel)
        if held is not None:
            self._drop(channel, held)
        return {}


def _core_handlers() -> dict[str, Handler]:
    return {
        "connect": Client._connect,
        "subscribe": Client._subscribe,
        "unsubscribe": Client._unsubscribe,
    }


_HANDLERS: dict[str, Handler] = {**_core_handlers(), **commands.HANDLERS}
