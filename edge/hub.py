"""Channels with local subscribers: one upstream subscription each, the fan-out, and moving a
subscription to another shard when the leader changes.

A publication from a shard is encoded once (JSON and WebSocket frame) and queued to every local
subscriber without an await. Subscribers joining with recovery are buffered until their
subscribe reply is out, so no publication is lost or duplicated across the join. When a
channel moves (failover, takeover, link loss), the hub resubscribes at the new leader from the
last offset it delivered and hands the missed publications over: clients see no gap.

What belongs here: a channel's life at this edge (subscribing upstream, live, moving, gone)
and what reaches its subscribers, in stream order. What never does: anything about one
client (its protocol, its permissions, its socket) beyond the ``Subscriber`` calls, and
any await in the fan-out path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from skyrelay.edge.batches import Batches
from skyrelay.edge.channel import Channel, ChannelState, Subscriber
from skyrelay.edge.delta import DeltaPublication
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.router import Router
from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.protocol.codes import ErrorCode, ReplyError, UnsubscribeCode
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.edge.hub")

# Backoff between attempts to move a channel to its new leader, in seconds.
MOVE_RETRY_FIRST = 0.05
MOVE_RETRY_MAX = 1.0
# Pushes kept per channel while its subscribe answer is awaited.
EARLY_PUSH_LIMIT = 10_000


def _state(channel: Channel) -> ChannelState:
    """The state now (it changes across awaits, which type checkers cannot see)."""
    return channel.state


class Hub:
    def __init__(
        self,
        router: Router,
        metrics: EdgeMetrics,
        linger: float = 0.0,
        cache_window: Callable[[str], tuple[int, float]] = lambda _: (0, 0.0),
    ) -> None:
        self.router = router
        self.metrics = metrics
        # Seconds a channel nobody holds stays subscribed upstream (and cached).
        self.linger = linger
        # Channel -> how many publications its hot cache keeps, and for how long.
        self.cache_window = cache_window
        self.channels: dict[str, Channel] = {}
        self.moves = 0
        self.batches = Batches(metrics.deliveries)

    async def acquire(self, name: str) -> Channel:
        """Hold ``name`` and wait until its upstream subscription is live."""
        channel = self.channels.get(name)
        if channel is None:
            loop = asyncio.get_running_loop()
            channel = Channel(name, loop.create_future(), self.cache_window(name))
            self.channels[name] = channel
            spawn(self._subscribe_upstream(channel))
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        channel.holds += 1
        try:
            await asyncio.shield(channel.ready)
        except BaseException:
            self.release(channel, None)
            raise
        return channel

    def release(self, channel: Channel, subscriber: Subscriber | None) -> None:
        if subscriber is not None:
            self.batches.hand_out(channel)
            channel.subscribers.pop(subscriber, None)
            channel.joining.pop(subscriber, None)
        channel.holds -= 1
        if channel.holds > 0 or self.channels.get(channel.name) is not channel:
            return
        if self.linger > 0 and channel.state in (ChannelState.LIVE, ChannelState.MOVING):
            loop = asyncio.get_running_loop()
            channel.expiry = loop.call_later(self.linger, self._expire, channel)
            return
        self._drop(channel)

    def _expire(self, channel: Channel) -> None:
        channel.expiry = None
        if channel.holds == 0 and self.channels.get(channel.name) is channel:
            self._drop(channel)

    def _drop(self, channel: Channel) -> None:
        if self.channels.get(channel.name) is channel:
            del self.channels[channel.name]
        if channel.state in (ChannelState.LIVE, ChannelState.MOVING):
            self.metrics.upstream_subscriptions.dec()
            if channel.link is not None:
                channel.link.send(wire.OP_UNSUB, {"ch": channel.name})
        channel.state = ChannelState.GONE

    def start_join(self, channel: Channel, subscriber: Subscriber) -> None:
        channel.joining[subscriber] = []

    def finish_join(self, channel: Channel, subscriber: Subscriber) -> list[dict[str, Any]]:
        """End buffering: the subscriber is live from now on; returns what was buffered."""
        self.batches.hand_out(channel)
        buffered = channel.joining.pop(subscriber, [])
        if channel.state is not ChannelState.GONE:
            channel.subscribers[subscriber] = None
        return buffered

    async def read(self, channel: Channel, offset: int, limit: int) -> dict[str, Any]:
        """Publications after ``offset``: from the hot cache when it covers them."""
        now = time.time()
        if channel.state is ChannelState.LIVE and channel.recent.covers(
            offset, channel.offset, now
        ):
            self.metrics.recovery_reads.labels(source="edge").inc()
            return {
                "publications": channel.recent.after(offset, limit),
                "epoch": channel.epoch,
                "offset": channel.offset,
            }
        self.metrics.recovery_reads.labels(source="origin").inc()
        params = {"ch": channel.name, "offset": offset, "limit": limit}
        shard = channel.link.id if channel.link is not None else None
        return (await self.router.request(channel.name, wire.OP_READ, params, shard))[1]

    async def _subscribe_upstream(self, channel: Channel) -> None:
        self.metrics.upstream_subscribes.inc()
        try:
            link, result = await self.router.request(
                channel.name, wire.OP_SUB, {"ch": channel.name}
            )
        except ReplyError as exc:
            if self.channels.get(channel.name) is channel:
                del self.channels[channel.name]
            channel.state = ChannelState.GONE
            channel.ready.set_exception(exc)
            return
        channel.link = link
        channel.epoch = str(result.get("epoch", ""))
        channel.offset = int(result.get("offset", 0))
        if self.channels.get(channel.name) is not channel:
            link.send(wire.OP_UNSUB, {"ch": channel.name})
            channel.ready.set_exception(ReplyError(ErrorCode.INTERNAL, temporary=True))
            return
        channel.state = ChannelState.LIVE
        self.metrics.upstream_subscriptions.inc()
        channel.ready.set_result(None)
        self._replay_early(channel, link)
        if self.router.primary(channel.name) != link.id:
            self.move(channel)  # the leader changed while we subscribed

    def on_push(self, link: LinkClient, push: dict[str, Any]) -> None:
        """A push from a shard, in the shard's order."""
        name = push.get("ch")
        if not isinstance(name, str):
            return
        channel = self.channels.get(name)
        if channel is None:
            return
        if channel.state in (ChannelState.SUBSCRIBING, ChannelState.MOVING):
            if len(channel.early) < EARLY_PUSH_LIMIT:
                channel.early.append((link, push))
            # Past the limit pushes are dropped; the next one shows a gap, and subscribers
            # are told to recover (never a silent loss).
            return
        if channel.link is not link:
            return  # from a shard this channel has moved away from
        if push.get("moved"):
            leader = push.get("leader")
            self.move(channel, leader if isinstance(leader, str) else None)
            return
        if push.get("cleared"):  # history_remove: what the cache holds left history
            channel.recent.clear()
            return
        for kind in ("join", "leave"):
            event = push.get(kind)
            if isinstance(event, dict) and channel.state is ChannelState.LIVE:
                self.batches.hand_out(channel)  # in order after the publications before it
                message = _event_push(name, kind, event)
                for subscriber in tuple(channel.subscribers):  # a delivery may close one
                    if subscriber.wants_join_leave(name):
                        subscriber.deliver(message)
                return
        pub = push.get("pub")
        if channel.state is not ChannelState.LIVE or not isinstance(pub, dict):
            return
        offset = pub.get("offset", 0)
        if offset:
            if push.get("epoch") == channel.epoch and offset <= channel.offset:
                return  # already delivered
            if push.get("epoch") != channel.epoch or offset != channel.offset + 1:
                self._invalidate(channel, "stream position lost")
                return
            channel.offset = offset
        self._fan_out(channel, pub, push.get("delta") is True)
        received = push.get("at")
        if isinstance(received, float):
            self.metrics.deliver_seconds.observe(max(0.0, time.time() - received))

    def _fan_out(self, channel: Channel, pub: dict[str, Any], delta: bool = False) -> None:
        self.metrics.publications.inc()
        offset = pub.get("offset", 0)
        base = channel.recent.get(offset - 1) if offset else None
        if offset:
            channel.recent.append(pub)
        if channel.subscribers:
            position = (channel.name, channel.epoch, offset)
            name = channel.name
            message = Outgoing.shared(
                lambda codec: codec.pub_push(name, pub),
                position,
                DeltaPublication(name, pub, base, delta),
            )
            self.batches.add(channel, message)
        for buffered in channel.joining.values():
            buffered.append(pub)

    # Moving channels between shards.

    def on_link_down(self, link: LinkClient) -> None:
        self.router.health.lost(link.id)
        for channel in list(self.channels.values()):
            if channel.link is link:
                self.move(channel)

    def on_link_up(self, link: LinkClient) -> None:
        # Health checks decide when a shard serves again; this only counts the (re)connect.
        self.metrics.link_reconnects.labels(shard=link.id).inc()

    def on_health_change(self) -> None:
        """Channels whose preferred leader changed follow it."""
        for channel in list(self.channels.values()):
            link = channel.link
            if link is not None and self.router.primary(channel.name) != link.id:
                self.move(channel)

    def move(self, channel: Channel, target: str | None = None) -> None:
        if channel.state not in (ChannelState.LIVE, ChannelState.MOVING):
            return
        channel.state = ChannelState.MOVING
        channel.target = target
        channel.wanted = True
        if channel.mover is None:
            channel.mover = spawn(self._move(channel))

    async def _move(self, channel: Channel) -> None:
        """Resubscribe at the leader from the last offset; hand over what was missed."""
        delay = MOVE_RETRY_FIRST
        name = channel.name
        try:
            while channel.state is ChannelState.MOVING:
                target, channel.target = channel.target, None
                channel.wanted = False
                # The epoch lets a deposed leader that does not know it yet tell that it is
                # behind this position, rather than answer from its stale copy.
                params = {"ch": name, "since": channel.offset, "epoch": channel.epoch}
                try:
                    link, result = await self.router.request(name, wire.OP_SUB, params, target)
                except ReplyError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MOVE_RETRY_MAX)
                    continue
                if _state(channel) is not ChannelState.MOVING:
                    link.send(wire.OP_UNSUB, {"ch": name})
                    return
                old, channel.link = channel.link, link
                if old is not None and old is not link:
                    old.send(wire.OP_UNSUB, {"ch": name})
                self._continue(channel, link, result)
                if _state(channel) is ChannelState.LIVE and channel.wanted:
                    channel.state = ChannelState.MOVING  # asked to move again meanwhile
        finally:
            channel.mover = None

    def _continue(self, channel: Channel, link: LinkClient, result: dict[str, Any]) -> None:
        pubs = result.get("publications") or []
        epoch = str(result.get("epoch", ""))
        top = int(result.get("offset", 0))
        if pubs:
            first, last = pubs[0].get("offset"), pubs[-1].get("offset")
            contiguous = first == channel.offset + 1 and last == top
        else:
            contiguous = top == channel.offset
        channel.state = ChannelState.LIVE
        if not contiguous or epoch != channel.epoch:
            self._invalidate(channel, "stream position lost")
            return
        for pub in pubs:
            channel.offset = int(pub["offset"])
            self._fan_out(channel, pub)
        self.moves += 1
        for params in channel.presence.values():  # the new leader learns who is here
            link.send(wire.OP_PRESENCE_ADD, params)
        self._replay_early(channel, link)
        log.info("channel %s now on shard %s (%d handed over)", channel.name, link.id, len(pubs))

    def presence_add(self, channel: Channel, info: dict[str, Any], announce: bool) -> None:
        """List a client in the channel's presence; ``announce`` its join and leave."""
        params = {"ch": channel.name, "info": info, "announce": announce}
        channel.presence[str(info["client"])] = params
        if channel.link is not None:
            channel.link.send(wire.OP_PRESENCE_ADD, params)

    def presence_remove(self, channel: Channel, client_id: str) -> None:
        if channel.presence.pop(client_id, None) is not None and channel.link is not None:
            params = {"ch": channel.name, "client": client_id}
            channel.link.send(wire.OP_PRESENCE_REMOVE, params)

    def _replay_early(self, channel: Channel, link: LinkClient) -> None:
        """Apply the pushes the new link sent right after its answer; drop the others'."""
        early, channel.early = channel.early, []
        for source, push in early:
            if source is link and channel.state is ChannelState.LIVE:
                self.on_push(link, push)

    def _invalidate(self, channel: Channel, reason: str) -> None:
        """The channel's position cannot be continued: subscribers resubscribe and recover."""
        log.warning("channel %s: %s; asking subscribers to resubscribe", channel.name, reason)
        self.batches.hand_out(channel)
        victims = list(channel.subscribers) + list(channel.joining)
        channel.subscribers.clear()
        channel.joining.clear()
        self._drop(channel)
        for subscriber in victims:
            with contextlib.suppress(Exception):
                subscriber.lost_channel(
                    channel.name, UnsubscribeCode.INSUFFICIENT_STATE, "insufficient state"
                )


def _event_push(channel: str, kind: str, event: dict[str, Any]) -> Outgoing:
    return Outgoing.shared(lambda codec: codec.push(channel, kind, event))
