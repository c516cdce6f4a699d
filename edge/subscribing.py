"""The subscribing side of a client connection: subscribe and unsubscribe, subscription
tokens, server-side subscriptions, joining a channel with recovery and going live on it.

``edge.client.Client`` is the connection; this is the part of it that talks to the hub about
channels. It never reads or writes a socket: replies go to the connection's ``Sink``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from skyrelay.config import NamespaceConfig
from skyrelay.edge import proxied, serversubs
from skyrelay.edge.auth import ChannelGrant, Credentials, ExpiredToken, InvalidToken, TokenMismatch
from skyrelay.edge.channel import Channel
from skyrelay.edge.delta import FOSSIL, DeltaPublication, delta_chain
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.proxy_replies import SubscribeGrant
from skyrelay.edge.recovery import RecoveryOutcome, decide_recovery
from skyrelay.edge.session import (
    PRIVATE_PREFIX,
    SessionState,
    SubscribeOptions,
    channel_param,
    check_subscribe_without_token,
    expiry_fields,
    subscribe_options,
    subscribe_result,
)
from skyrelay.link.event_entries import (
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED_CODE,
    UNSUBSCRIBED_REASON,
)
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import (
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
    resubscribes,
)
from skyrelay.protocol.messages import Command


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


class Sink(Protocol):
    def send(self, payload: bytes) -> None: ...  # pragma: no cover
    def deliver(self, message: Outgoing) -> None: ...  # pragma: no cover
    def close(self, code: int, reason: str) -> None: ...  # pragma: no cover


# What a lost server-side subscription costs the connection, by the unsubscribe code a
# client-side one would get.
_SERVER_SIDE_LOSS: dict[int, int] = {
    UnsubscribeCode.INSUFFICIENT_STATE: DisconnectCode.INSUFFICIENT_STATE,
    UnsubscribeCode.EXPIRED: DisconnectCode.SUB_EXPIRED,
}


class Subscribing:
    """Subscriptions of one connection (a part of ``edge.client.Client``)."""

    __slots__ = ("chan_info", "deltas", "join_leave", "server_subs", "sub_expiry", "subs")

    def close(self, code: int, reason: str | None = None) -> None:
        raise NotImplementedError  # pragma: no cover - the connection closes itself

    def __init__(self) -> None:
        # channel -> hub channel; None while the upstream subscription is being set up.
        self.subs: dict[str, Channel | None] = {}
        # Channels whose join and leave events this client asked for.
        self.join_leave: set[str] | None = None
        # channel -> expiry of its subscription token, when it has one.
        self.sub_expiry: dict[str, int] | None = None
        # Delta subscriptions: channel -> whether the client holds the base of the next patch.
        self.deltas: dict[str, bool] | None = None
        # channel -> ``chan_info`` its subscription token gave, when one did.
        self.chan_info: dict[str, Any] | None = None
        # Channels the server subscribed this connection to at connect.
        self.server_subs: set[str] | None = None

    # Provided by the connection.
    id: str
    user: str
    node: EdgeNode
    sink: Sink
    codec: ServerCodec
    headers: dict[str, str]
    meta: dict[str, Any] | None
    deliver: Callable[[Outgoing], None]
    state: SessionState
    transport_name: str
    info: Any

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def namespace(self, channel: str) -> NamespaceConfig:
        ns = self.node.config.namespace(channel)
        if ns is None or not ns.name_allowed(channel):
            raise ReplyError(ErrorCode.UNKNOWN_CHANNEL)
        return ns

    def set_sub_expiry(self, channel: str, expires_at: int) -> None:
        if expires_at:
            if self.sub_expiry is None:
                self.sub_expiry = {}
            self.sub_expiry[channel] = expires_at
        elif self.sub_expiry is not None:
            self.sub_expiry.pop(channel, None)

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

    async def _subscribe(self, command: Command) -> dict[str, Any] | None:
        channel = channel_param(command.params)
        ns = self.namespace(channel)
        if channel in self.subs:
            raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
        settings = self.node.config.edge
        if len(self.subs) >= settings.max_subscriptions_per_connection:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED)
        self.node.events.check_room()
        token = command.params.get("token")
        if token is not None and not isinstance(token, str):
            raise ReplyError(ErrorCode.BAD_REQUEST, "token must be a string")
        grant = await self._check_token(channel, token) if token else None
        allowed: SubscribeGrant | None = None
        if grant is not None:
            options = subscribe_options(ns, command.params, grant.overrides, grant.info)
        elif ns.subscribe_proxy and not channel.startswith(PRIVATE_PREFIX):
            # The app's backend decides, instead of allow_subscribe.
            allowed = await proxied.subscribe(self, ns.subscribe_proxy, channel, command.params)
            options = subscribe_options(ns, command.params, allowed.overrides, allowed.info)
        else:
            check_subscribe_without_token(ns, channel, self.user, settings.insecure)
            options = subscribe_options(ns, command.params)
        delta = _delta_asked(ns, command.params)
        join = await self.join(channel, options)
        if join is None:
            return None
        if grant is not None and grant.expires_at:
            self.set_sub_expiry(channel, grant.expires_at)
            join.result.update(expiry_fields(grant.expires_at, time.time()))
        if allowed is not None:
            if allowed.data is not None:
                join.result["data"] = allowed.data
            if allowed.expire_at:
                self.set_sub_expiry(channel, allowed.expire_at)
                if not ns.sub_refresh_proxy:  # else the edge asks the backend, not the client
                    join.result.update(expiry_fields(allowed.expire_at, time.time()))
        if join.outcome is not None and not join.outcome.recovered and options.reject_unrecovered:
            self.node.hub.finish_join(join.channel, self)
            self._drop(channel, join.channel)
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        if self.node.events.enabled:
            await self._subscribe_recorded(channel, join)
            if self.subs.get(channel) is not join.channel:
                return None  # closed, or unsubscribed, while the log took it
        if delta:
            self._start_delta(join)
        self.sink.send(self.codec.reply(command.id, "subscribe", join.result))
        self.go_live(join)
        return None

    async def _subscribe_recorded(self, channel: str, join: Join) -> None:
        """Answered only once the subscribe is in the event log; if the log cannot take it,
        the subscription is dropped (its unsubscribe follows it in the log) and the client
        retries."""
        events = self.node.events
        try:
            await events.confirmed(events.record(SUBSCRIBE, self, True, channel=channel))
        except ReplyError:
            if self.subs.get(channel) is join.channel:
                self.node.hub.finish_join(join.channel, self)
                self._drop(channel, join.channel)
            raise

    def _start_delta(self, join: Join) -> None:
        """Delta compression for this subscription: the recovered publications as a chain of
        patches, and live ones as patches once the client holds a base."""
        join.result["delta"] = True
        pubs = join.result.get("publications")
        if pubs:
            join.result["publications"] = delta_chain(self.codec, pubs)
        if self.deltas is None:
            self.deltas = {}
            self.deliver = self._deliver_deltas
        self.deltas[join.name] = join.outcome is not None and join.outcome.recovered

    def _deliver_deltas(self, message: Outgoing) -> None:
        position = message.position
        deltas = self.deltas
        if position is not None and deltas is not None:
            ready = deltas.get(position[0])
            if ready is not None:
                deltas[position[0]] = message.leaves_base()
                self.sink.deliver(message.delta_view(not ready))
                return
        self.sink.deliver(message)

    async def _check_token(self, channel: str, token: str) -> ChannelGrant:
        """A subscription token, on any channel: what it grants, or the protocol's error."""
        await self.node.fetch_keys(token)
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
        base: dict[str, Any] | None = None
        for pub in self.node.hub.finish_join(join.channel, self):
            offset = pub.get("offset", 0)
            if offset == 0 or offset > join.top:
                self.deliver_pub(join, pub, base)
                base = pub if offset else None

    def deliver_pub(
        self, join: Join, pub: dict[str, Any], base: dict[str, Any] | None = None
    ) -> None:
        """One publication that waited for the subscribe reply; patched against ``base``,
        the one before it, for a delta subscription."""
        name = join.name
        position = (name, join.channel.epoch, pub.get("offset", 0))
        delta = DeltaPublication(name, pub, base, True)
        self.deliver(Outgoing.shared(lambda codec: codec.pub_push(name, pub), position, delta))

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
        self.node.events.record(
            UNSUBSCRIBE, self, channel=channel, code=UNSUBSCRIBED_CODE, reason=UNSUBSCRIBED_REASON
        )
        self.node.hub.presence_remove(held, self.id)
        if self.deltas is not None:
            self.deltas.pop(channel, None)
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

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        if self.server_subs is not None and channel in self.server_subs and resubscribes(code):
            # A client cannot resubscribe a server-side subscription: it reconnects instead,
            # and recovers the channel through its connect command.
            self.close(_SERVER_SIDE_LOSS.get(code, DisconnectCode.INSUFFICIENT_STATE))
            return
        if self.deltas is not None:
            self.deltas.pop(channel, None)
        if self.subs.pop(channel, None) is not None:
            self.node.events.record(UNSUBSCRIBE, self, channel=channel, code=code, reason=reason)
            self.node.metrics.subscriptions.labels(self.transport_name).dec()
            self.sink.send(self.codec.unsubscribe_push(channel, code, reason))


def _delta_asked(ns: NamespaceConfig, params: dict[str, Any]) -> bool:
    """Does this subscribe get delta compression? Only fossil exists; an unknown type is a bad
    request, one the namespace does not allow is quietly off (``delta`` absent in the reply)."""
    asked = params.get("delta") or ""
    if asked == "":
        return False
    if asked != FOSSIL:
        raise Disconnect(DisconnectCode.BAD_REQUEST, "unknown delta type")
    return FOSSIL in ns.allowed_delta_types
