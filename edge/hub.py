"""Channels with local subscribers: one upstream subscription each, and the fan-out.

A publication from a shard is encoded once (JSON and WebSocket frame) and queued to every local
subscriber without an await. Subscribers joining with recovery are buffered until their
subscribe reply is out, so no publication is lost or duplicated across the join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import Enum
from typing import Any, Protocol

from edge import protocol
from edge.codes import ErrorCode, ReplyError, UnsubscribeCode
from edge.outbox import Outgoing
from edge.router import Router
from edge.upstream import ShardLink
from skyrelay import edgelink
from skyrelay.metrics import EdgeMetrics
from skyrelay.tasks import spawn

log = logging.getLogger("skyrelay.edge.hub")


class Subscriber(Protocol):
    def deliver(self, message: Outgoing) -> None: ...  # pragma: no cover
    def lost_channel(self, channel: str, code: int, reason: str) -> None: ...  # pragma: no cover


class ChannelState(Enum):
    SUBSCRIBING = "subscribing"  # upstream subscribe in flight
    LIVE = "live"  # publications flow
    RESYNCING = "resyncing"  # link lost; catching up from the last offset once it is back
    GONE = "gone"  # dropped from the hub


class Channel:
    __slots__ = (
        "epoch",
        "holds",
        "joining",
        "link",
        "name",
        "offset",
        "ready",
        "state",
        "subscribers",
    )

    def __init__(self, name: str, link: ShardLink, ready: asyncio.Future[None]) -> None:
        self.name = name
        self.link = link
        self.state = ChannelState.SUBSCRIBING
        self.ready = ready
        self.epoch = ""
        self.offset = 0
        # Clients holding the channel: subscribed, or on their way (counts both).
        self.holds = 0
        self.subscribers: dict[Subscriber, None] = {}
        # Subscribers whose reply is not out yet -> publications pushed meanwhile.
        self.joining: dict[Subscriber, list[dict[str, Any]]] = {}


class Hub:
    def __init__(self, router: Router, metrics: EdgeMetrics) -> None:
        self.router = router
        self.metrics = metrics
        self.channels: dict[str, Channel] = {}

    async def acquire(self, name: str) -> Channel:
        """Hold ``name`` and wait until its upstream subscription is live."""
        channel = self.channels.get(name)
        if channel is None:
            loop = asyncio.get_running_loop()
            channel = Channel(name, self.router.link_for(name), loop.create_future())
            self.channels[name] = channel
            spawn(self._subscribe_upstream(channel))
        channel.holds += 1
        try:
            await asyncio.shield(channel.ready)
        except BaseException:
            self.release(channel, None)
            raise
        return channel

    def release(self, channel: Channel, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            channel.subscribers.pop(subscriber, None)
            channel.joining.pop(subscriber, None)
        channel.holds -= 1
        if channel.holds > 0 or self.channels.get(channel.name) is not channel:
            return
        del self.channels[channel.name]
        if channel.state is ChannelState.LIVE:
            channel.link.send(edgelink.OP_UNSUB, {"ch": channel.name})
            self.metrics.upstream_subscriptions.dec()
        channel.state = ChannelState.GONE

    def add_live(self, channel: Channel, subscriber: Subscriber) -> None:
        channel.subscribers[subscriber] = None

    def start_join(self, channel: Channel, subscriber: Subscriber) -> None:
        channel.joining[subscriber] = []

    def finish_join(self, channel: Channel, subscriber: Subscriber) -> list[dict[str, Any]]:
        """End buffering: the subscriber is live from now on; returns what was buffered."""
        buffered = channel.joining.pop(subscriber, [])
        if channel.state is not ChannelState.GONE:
            channel.subscribers[subscriber] = None
        return buffered

    async def read(self, channel: Channel, offset: int, limit: int) -> dict[str, Any]:
        return await channel.link.request(
            edgelink.OP_READ, {"ch": channel.name, "offset": offset, "limit": limit}
        )

    async def _subscribe_upstream(self, channel: Channel) -> None:
        self.metrics.upstream_subscribes.inc()
        try:
            result = await channel.link.request(edgelink.OP_SUB, {"ch": channel.name})
        except ReplyError as exc:
            if self.channels.get(channel.name) is channel:
                del self.channels[channel.name]
            channel.state = ChannelState.GONE
            channel.ready.set_exception(exc)
            return
        channel.epoch = str(result.get("epoch", ""))
        channel.offset = int(result.get("offset", 0))
        if self.channels.get(channel.name) is not channel:
            channel.link.send(edgelink.OP_UNSUB, {"ch": channel.name})
            channel.ready.set_exception(ReplyError(ErrorCode.INTERNAL, temporary=True))
            return
        channel.state = ChannelState.LIVE
        self.metrics.upstream_subscriptions.inc()
        channel.ready.set_result(None)

    def on_push(self, push: dict[str, Any]) -> None:
        """A publication from a shard, in the shard's order."""
        name = push.get("ch")
        if not isinstance(name, str):
            return
        channel = self.channels.get(name)
        if channel is None or channel.state is not ChannelState.LIVE:
            return
        pub = push.get("pub")
        if not isinstance(pub, dict):
            return
        offset = pub.get("offset", 0)
        if offset:
            if push.get("epoch") == channel.epoch and offset <= channel.offset:
                return  # already delivered
            if push.get("epoch") != channel.epoch or offset != channel.offset + 1:
                self._invalidate(channel, "stream position lost")
                return
            channel.offset = offset
        self._fan_out(channel, pub)

    def _fan_out(self, channel: Channel, pub: dict[str, Any]) -> None:
        self.metrics.publications.inc()
        subscribers = channel.subscribers
        if subscribers:
            message = Outgoing(protocol.pub_push(channel.name, pub))
            for subscriber in subscribers:
                subscriber.deliver(message)
            self.metrics.deliveries.inc(len(subscribers))
        for buffered in channel.joining.values():
            buffered.append(pub)

    def on_link_down(self, link: ShardLink) -> None:
        for channel in self.channels.values():
            if channel.link is link and channel.state is ChannelState.LIVE:
                channel.state = ChannelState.RESYNCING

    def on_link_up(self, link: ShardLink) -> None:
        for channel in list(self.channels.values()):
            if channel.link is link and channel.state is ChannelState.RESYNCING:
                spawn(self._resync(channel))

    async def _resync(self, channel: Channel) -> None:
        """Resubscribe from the last offset seen; deliver what was missed, or say it is lost."""
        try:
            result = await channel.link.request(
                edgelink.OP_SUB, {"ch": channel.name, "since": channel.offset}
            )
        except ReplyError:
            return  # the link went down again; the next on_link_up retries
        if channel.state is not ChannelState.RESYNCING:
            if channel.state is ChannelState.GONE:
                channel.link.send(edgelink.OP_UNSUB, {"ch": channel.name})
            return
        pubs = result.get("publications") or []
        epoch = str(result.get("epoch", ""))
        top = int(result.get("offset", 0))
        contiguous = epoch == channel.epoch and (
            (not pubs and top == channel.offset)
            or (
                pubs
                and pubs[0].get("offset") == channel.offset + 1
                and pubs[-1].get("offset") == top
            )
        )
        if not contiguous:
            channel.state = ChannelState.LIVE
            self._invalidate(channel, "stream position lost")
            return
        channel.state = ChannelState.LIVE
        for pub in pubs:
            channel.offset = int(pub["offset"])
            self._fan_out(channel, pub)
        log.info("channel %s resynchronised (%d missed)", channel.name, len(pubs))

    def _invalidate(self, channel: Channel, reason: str) -> None:
        """The channel's position cannot be continued: subscribers resubscribe and recover."""
        log.warning("channel %s: %s; asking subscribers to resubscribe", channel.name, reason)
        if self.channels.get(channel.name) is channel:
            del self.channels[channel.name]
        if channel.state is ChannelState.LIVE:
            channel.link.send(edgelink.OP_UNSUB, {"ch": channel.name})
            self.metrics.upstream_subscriptions.dec()
        channel.state = ChannelState.GONE
        victims = list(channel.subscribers) + list(channel.joining)
        channel.subscribers.clear()
        channel.joining.clear()
        for subscriber in victims:
            with contextlib.suppress(Exception):
                subscriber.lost_channel(
                    channel.name, UnsubscribeCode.INSUFFICIENT_STATE, "insufficient state"
                )
