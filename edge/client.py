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

from edge import commands, protocol, serversubs
from edge.auth import (
    ANONYMOUS,
    ChannelGrant,
    Credentials,
    ExpiredToken,
    InvalidToken,
    TokenMismatch,
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
    check_subscribe_without_token,
    expiry_fields,
    subscribe_options,
    subscribe_result,
    token_param,
)
from skyrelay import VERSION
from skyrelay.config import NamespaceConfig, Permission
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

log = logging.getLogger("skyrelay.edge.client")


class Sink(Protocol):
    def send(self, payload: bytes) -> None: ...  # pragma: no cover
    def deliver(self, message: Outgoing) -> None: ...  # pragma: no cover
    def close(self, code: int, reason: str) -> None: ...  # pragma: no cover


Handler = Callable[["Client", Command], Awaitable[dict[str, Any] | None]]

# The wire format connections speak: JSON (a second format implements the same interface).
CODEC: ServerCodec = protocol

# What a lost server-side subscription costs the connection, by the unsubscribe code a
# client-side one would get.
_SERVER_SIDE_LOSS: dict[int, int] = {
    UnsubscribeCode.INSUFFICIENT_STATE: DisconnectCode.INSUFFICIENT_STATE,
    UnsubscribeCode.EXPIRED: DisconnectCode.SUB_EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Join:
    """A subscription on its way: the result to send, then ``go_live``."""

    name: str
    channel: Channel
    result: dict[str, Any]
    # Stream offset the result stands at; buffered publications above it follow it.
    top: int
    outcome: RecoveryOutcome | None
    options: SubscribeOptions


class Client:
    __slots__ = (
        "awaiting_pong",
        "chan_info",
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
        "server_subs",
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
        # channel -> expiry of its subscription token, when it has one.
        self.sub_expiry: dict[str, int] | None = None
        # channel -> ``chan_info`` its subscription token gave, when one did.
        self.chan_info: dict[str, Any] | None = None
        # Channels the server subscribed this connection to at connect.
        self.server_subs: set[str] | None = None

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    # Called by the hub and the ping wheel (synchronous, no await).

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        if self.server_subs is not None and channel in self.server_subs and code >= 2500:
            # A client cannot resubscribe a server-side subscription: it reconnects instead,
            # and recovers the channel through its connect command.
            self.close(_SERVER_SIDE_LOSS.get(code, DisconnectCode.INSUFFICIENT_STATE))
            return
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

    async def _connect(self, command: Command) -> None:
        if self.state is not SessionState.CONNECTING:
            raise Disconnect(DisconnectCode.BAD_REQUEST, "already connected")
        try:
            resume = serversubs.positions_from_subs(command.params.get("subs"))
        except ValueError as exc:
            raise Disconnect(DisconnectCode.BAD_REQUEST, str(exc)) from None
        if token_param(command.params) or not self.anonymous_allowed():
            await self.fetch_keys(command.params.get("token"))
            if self.state is not SessionState.CONNECTING:
                # Closed while the keys were fetched: never register a connection that is gone.
                raise Disconnect(DisconnectCode.BAD_REQUEST, "closed while connecting")
            credentials = self.verify(command, time.time(), ReplyError(ErrorCode.TOKEN_EXPIRED))
        else:
            credentials = ANONYMOUS
        result = self.accept(credentials, time.time())
        joins = await self.join_server_side(credentials, resume)
        if self.closed:
            return
        if joins:
            result["subs"] = {join.name: join.result for join in joins}
        self.sink.send(protocol.reply(command.id, "connect", result))
        for join in joins:
            self.go_live(join)

    def anonymous_allowed(self) -> bool:
        """May a connection without a token connect, as anonymous?"""
        settings = self.node.config.edge
        return settings.allow_anonymous_connect_without_token or settings.insecure

    async def join_server_side(
        self, credentials: Credentials, resume: serversubs.Positions
    ) -> list[Join]:
        """Join the server-side subscriptions (buffered until ``go_live``); none if the
        client closed meanwhile. A channel whose shards are down costs the connection 3004:
        the client reconnects, rather than run without a channel its token promised."""
        joins: list[Join] = []
        for sub, options in serversubs.plan(self.node.config, credentials, resume):
            if sub.channel in self.subs:
                continue
            try:
                join = await self.join(sub.channel, options)
            except ReplyError:
                raise Disconnect(DisconnectCode.SERVER_ERROR) from None
            if join is None:
                return []
            if sub.data is not None:
                join.result["data"] = sub.data
            if self.server_subs is None:
                self.server_subs = set()
            self.server_subs.add(sub.channel)
            joins.append(join)
        return joins

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

    def verify(self, command: Command, now: float, expired: Exception) -> Credentials:
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

    def permits(self, permission: Permission, channel: str) -> bool:
        """Does ``permission`` (a namespace's allow_*) let this connection act on ``channel``?"""
        if self.node.config.edge.insecure:
            return True
        return allowed(permission, self.user, self.subscribed(channel))

    async def _subscribe(self, command: Command) -> dict[str, Any] | None:
        channel = channel_param(command.params)
        ns = self.namespace(channel)
        if channel in self.subs:
            raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
        settings = self.node.config.edge
        if len(self.subs) >= settings.max_subscriptions_per_connection:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED)
        token = command.params.get("token")
        if token is not None and not isinstance(token, str):
            raise ReplyError(ErrorCode.BAD_REQUEST, "token must be a string")
        grant = await self._check_token(channel, token) if token else None
        if grant is None:
            check_subscribe_without_token(ns, channel, self.user, settings.insecure)
            options = subscribe_options(ns, command.params)
        else:
            options = subscribe_options(ns, command.params, grant.overrides, grant.info)
        join = await self.join(channel, options)
        if join is None:
            return None
        if grant is not None and grant.expires_at:
            self.set_sub_expiry(channel, grant.expires_at)
            join.result.update(expiry_fields(grant.expires_at, time.time()))
        if join.outcome is not None and not join.outcome.recovered and options.reject_unrecovered:
            self.node.hub.finish_join(join.channel, self)
            self._drop(channel, join.channel)
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        self.sink.send(protocol.reply(command.id, "subscribe", join.result))
        self.go_live(join)
        return None

    async def _check_token(self, channel: str, token: str) -> ChannelGrant:
        """A subscription token, on any channel: what it grants, or the protocol's error."""
        await self.fetch_keys(token)
        try:
            return self.node.verifier.verify_subscription(
                token, channel, self.user, self.id, time.time()
            )
        except ExpiredToken:
            raise ReplyError(ErrorCode.TOKEN_EXPIRED) from None
        except InvalidToken:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "invalid subscription token") from None
        except TokenMismatch:
            raise Disconnect(DisconnectCode.INVALID_TOKEN) from None

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
            return Join(channel, held, result, held.offset, None, options)
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
        result = subscribe_result(options, "", 0, outcome)
        return Join(channel, held, result, top, outcome, options)

    def go_live(self, join: Join) -> None:
        """After the result went out: send what was buffered past it, then deliver live."""
        options = join.options
        if options.push_join_leave:
            if self.join_leave is None:
                self.join_leave = set()
            self.join_leave.add(join.name)
        if options.chan_info is not None:
            if self.chan_info is None:
                self.chan_info = {}
            self.chan_info[join.name] = options.chan_info
        if options.presence:
            info = self.client_info(join.name)
            self.node.hub.presence_add(join.channel, info, options.emit_join_leave)
        for pub in self.node.hub.finish_join(join.channel, self):
            offset = pub.get("offset", 0)
            if offset == 0 or offset > join.top:
                self.deliver_pub(join, pub)

    def deliver_pub(self, join: Join, pub: dict[str, Any]) -> None:
        position = (join.name, join.channel.epoch, pub.get("offset", 0))
        self.sink.deliver(Outgoing(protocol.pub_push(join.name, pub), position))

    def wants_join_leave(self, channel: str) -> bool:
        return self.join_leave is not None and channel in self.join_leave

    def client_info(self, channel: str = "") -> dict[str, Any]:
        """This connection's ClientInfo, with its ``chan_info`` in ``channel`` if it has one."""
        info: dict[str, Any] = {"user": self.user, "client": self.id}
        if self.info is not None:
            info["conn_info"] = self.info
        if self.chan_info is not None and channel in self.chan_info:
            info["chan_info"] = self.chan_info[channel]
        return info

    def _drop(self, channel: str, held: Channel) -> None:
        self.node.hub.presence_remove(held, self.id)
        if self.join_leave is not None:
            self.join_leave.discard(channel)
        if self.chan_info is not None:
            self.chan_info.pop(channel, None)
        if self.server_subs is not None:
            self.server_subs.discard(channel)
        self.subs.pop(channel, None)
        self.node.hub.release(held, self)
        self.node.metrics.subscriptions.labels(self.transport_name).dec()

    async def _unsubscribe(self, command: Command) -> dict[str, Any]:
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
