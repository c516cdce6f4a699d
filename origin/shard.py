"""A shard: serves edge-link requests for the channels it leads, and replication requests
from the other shards. Publications are pushed, encoded once, to every subscribed edge when
they commit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Hashable, Mapping
from typing import Any, Protocol

from skyrelay.config import ClusterConfig
from skyrelay.config.settings import EVENT_LOG_CHANNEL
from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.origin import following, membership, publishing
from skyrelay.origin.event_log import EventLog
from skyrelay.origin.handover import take_over
from skyrelay.origin.metrics import OriginMetrics
from skyrelay.origin.presence import Presence
from skyrelay.origin.readiness import led_by_me, resync
from skyrelay.origin.replication import Replicator
from skyrelay.origin.storage.store import ShardStore
from skyrelay.origin.stream import ChannelStream, HistoryPage, Publication
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.ring import Ring
from skyrelay.ring.health import HealthView


class Peer(Hashable, Protocol):
    """An edge (or shard) connected to this shard's link endpoint."""

    def send(self, message: bytes) -> None: ...  # pragma: no cover


class Shard:
    def __init__(
        self,
        config: ClusterConfig,
        shard_id: str,
        ring: Ring,
        health: HealthView,
        links: Mapping[str, LinkClient],
        metrics: OriginMetrics | None = None,
        store: ShardStore | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or OriginMetrics()
        self.id = shard_id
        self.replicator = Replicator(
            config, shard_id, ring, health, links, self._push, self._moved, store
        )
        self.publisher = publishing.Publisher(self.replicator, self.metrics, self._push_unkept)
        # channel -> edges subscribed to it here (only while this shard leads it)
        self.subscribers: dict[str, dict[Peer, None]] = {}
        self.presence = Presence()
        # Connection and channel events for the app's backend (where ``[events]`` is set).
        self.events = EventLog(self.replicator, self.metrics)
        self.published = 0
        # This process, in the server API's ``info``.
        self.uid = str(uuid.uuid4())
        self.started = time.monotonic()

    @property
    def store(self) -> ShardStore | None:
        return self.replicator.persistence.store

    def durable_marker(self, message: dict[str, Any]) -> int:
        """The storage write an answer to ``message`` must wait for (0: none): a replica
        acknowledges what it holds only once it is durable."""
        return self.replicator.persistence.marker if message.get("op") in wire.PEER_OPS else 0

    @staticmethod
    def is_immediate(message: dict[str, Any]) -> bool:
        """Requests answered without waiting: replication and unsubscribe. The link runs
        them in arrival order, which replication relies on."""
        op = message.get("op")
        return isinstance(op, str) and (op in wire.PEER_OPS or op in _IMMEDIATE)

    def handle_now(self, peer: Peer, message: dict[str, Any]) -> bytes:
        req_id = _request_id(message)
        op = str(message.get("op"))
        try:
            if op in wire.PEER_OPS:
                return wire.result(req_id, following.handle(self.replicator, op, message))
            if op == wire.OP_LED:
                member = str(message.get("member", ""))
                resync(self.replicator, member, message.get("resync"))
                return wire.result(req_id, {"channels": led_by_me(self.replicator, member)})
            channel = _channel(message)
            if op == wire.OP_UNSUB:
                self._unsubscribe(peer, channel)
            elif op == wire.OP_PRESENCE_ADD:
                self._presence_add(peer, channel, message)
            elif op == wire.OP_PRESENCE_REMOVE:
                left = self.presence.remove(channel, str(message["client"]))
                if left is not None:
                    self._announce(channel, "leave", left)
            return wire.result(req_id, {})
        except ReplyError as exc:
            return wire.error(req_id, exc.code, exc.message, exc.temporary, exc.leader)
        except (KeyError, TypeError, ValueError) as exc:
            return wire.error(req_id, ErrorCode.BAD_REQUEST, f"malformed request: {exc}")

    def _presence_add(self, peer: Peer, channel: str, message: dict[str, Any]) -> None:
        info = message["info"]
        if not isinstance(info, dict) or not isinstance(info.get("client"), str):
            raise ValueError("info must hold the client id")
        announce = message.get("announce")
        if not isinstance(announce, bool):  # an edge from before the flag
            ns = self.config.namespace(channel)
            announce = ns is not None and ns.join_leave
        if self.presence.add(channel, peer, info, announce):
            self._announce(channel, "join", info)

    async def handle(self, peer: Peer, message: dict[str, Any]) -> bytes:
        req_id = _request_id(message)
        try:
            return wire.result(req_id, await self._run(peer, message))
        except ReplyError as exc:
            return wire.error(req_id, exc.code, exc.message, exc.temporary, exc.leader)
        except (KeyError, TypeError, ValueError) as exc:
            return wire.error(req_id, ErrorCode.BAD_REQUEST, f"malformed request: {exc}")

    async def _run(self, peer: Peer, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == wire.OP_PUBS:
            items = message.get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ReplyError(ErrorCode.BAD_REQUEST, "items must be a list of objects")
            outcomes = await self.publisher.publish_items(items)
            return {"results": [publishing.outcome_body(o) for o in outcomes]}
        if op == wire.OP_EVENTS:
            return await self.events.append(message.get("node"), message.get("items"))
        channel = _channel(message)
        now = time.time()
        if op == wire.OP_PUB:
            return await self.publisher.publish_one(channel, message, now)
        if op == wire.OP_HISTORY_REMOVE:
            rep = await self.replicator.lead(channel)
            membership.clear_history(self.replicator, rep)
            cleared = wire.cleared_push(channel)
            for subscriber in self.subscribers.get(channel, {}):
                subscriber.send(cleared)
            return {}
        if op == wire.OP_TAKE_OVER:
            await take_over(self.replicator, channel, str(message.get("from", "")))
            return {}
        if op in (wire.OP_PRESENCE, wire.OP_PRESENCE_STATS):
            await self.replicator.lead(channel)
            if op == wire.OP_PRESENCE:
                return {"presence": self.presence.clients(channel)}
            return self.presence.stats(channel)
        if op not in (wire.OP_SUB, wire.OP_HISTORY, wire.OP_READ):
            raise ReplyError(ErrorCode.BAD_REQUEST, f"unknown op {op!r}")
        return await self._read(peer, str(op), channel, message, now)

    async def _read(
        self, peer: Peer, op: str, channel: str, message: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """sub, read and history: answered from the leader's committed stream."""
        rep = await self.replicator.lead(channel)
        if op == wire.OP_SUB and _ahead(message, rep.stream):
            # The edge has seen publications this leader never committed: another leader
            # took over while we could not hear of it (a partition, a pause). Claim again:
            # a quorum's copies hold them, so we never answer from a stale copy.
            rep = await self.replicator.reclaim(channel)
        stream = rep.stream
        assert stream is not None
        # No await from here on: registering and reading the position happen together, so
        # every push that follows the answer continues right after it.
        if op == wire.OP_SUB:
            self.subscribers.setdefault(channel, {})[peer] = None
            since = message.get("since")
            if since is None:
                return {"epoch": stream.epoch, "offset": stream.committed, "publications": []}
            return _page(
                stream.since(_int(since, "since"), _int(message.get("limit", -1), "limit"), now)
            )
        if op == wire.OP_READ:
            offset = _int(message.get("offset", 0), "offset")
            return _page(stream.since(offset, _int(message.get("limit", -1), "limit"), now))
        ns = self.config.namespace(channel)
        if ns is not None and ns.history_size == 0:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
        since = message.get("since")
        page = stream.history(
            _int(message.get("limit", 0), "limit"),
            now,
            since=None if since is None else _int(since, "since"),
            reverse=bool(message.get("reverse")),
        )
        return _page(page)

    def _unsubscribe(self, peer: Peer, channel: str) -> None:
        peers = self.subscribers.get(channel)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self.subscribers[channel]

    def drop_peer(self, peer: Peer) -> None:
        """Forget a link that went away, and the clients it reported."""
        for channel in [ch for ch, peers in self.subscribers.items() if peer in peers]:
            self._unsubscribe(peer, channel)
        for channel, info in self.presence.drop_edge(peer):
            self._announce(channel, "leave", info)

    def _announce(self, channel: str, kind: str, info: dict[str, Any]) -> None:
        """A join or leave the edge asked to announce (the namespace, or the client's
        subscription token, decided)."""
        peers = self.subscribers.get(channel)
        if not peers:
            return
        push = wire.join_push(channel, kind, info)
        for peer in peers:
            peer.send(push)

    def _push(self, channel: str, pubs: list[Publication]) -> None:
        """Committed publications, in order, to every subscribed edge: encoded once each."""
        self.published += sum(1 for p in pubs if p.offset)
        if channel == EVENT_LOG_CHANNEL:
            self.events.wake()
        peers = self.subscribers.get(channel)
        if not peers:
            return
        rep = self.replicator.replicas.get(channel)
        epoch = rep.stream.epoch if rep is not None and rep.stream is not None else ""
        for pub in pubs:
            push = wire.pub_push(channel, epoch, pub.to_wire(), pub.received, pub.delta)
            for peer in peers:
                peer.send(push)

    def _push_unkept(self, channel: str, pub: Publication) -> None:
        self.published += 1
        self._push(channel, [pub])

    def _moved(self, channel: str, leader: str | None) -> None:
        peers = self.subscribers.pop(channel, None)
        if peers:
            push = wire.moved_push(channel, leader)
            for peer in peers:
                peer.send(push)


_IMMEDIATE = frozenset({wire.OP_UNSUB, wire.OP_PRESENCE_ADD, wire.OP_PRESENCE_REMOVE, wire.OP_LED})


def _request_id(message: dict[str, Any]) -> int:
    req_id = message.get("id")
    if isinstance(req_id, bool) or not isinstance(req_id, int):
        raise wire.LinkProtocolError("request without an integer id")
    return req_id


def _channel(message: dict[str, Any]) -> str:
    channel = message.get("ch")
    if not isinstance(channel, str) or not channel:
        raise ReplyError(ErrorCode.BAD_REQUEST, "ch must be a non-empty string")
    return channel


def _ahead(message: dict[str, Any], stream: ChannelStream | None) -> bool:
    """A subscribe from a position in this stream past what it committed."""
    since = message.get("since")
    return (
        stream is not None
        and isinstance(since, int)
        and message.get("epoch") == stream.epoch
        and since > stream.committed
    )


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReplyError(ErrorCode.BAD_REQUEST, f"{name} must be an integer")
    return value


def _page(page: HistoryPage) -> dict[str, Any]:
    return {
        "publications": [p.to_wire() for p in page.publications],
        "epoch": page.epoch,
        "offset": page.offset,
    }
