"""A shard's channels and the edge links subscribed to them. Pure: messages in, bytes out.

The link adapter feeds each decoded edge-link request to ``Shard.handle`` and writes back the
response and the pushes it returns; publication pushes are encoded once for all edges.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from origin.idempotency import IdempotencyCache
from origin.stream import ChannelStream, HistoryPage, Publication
from skyrelay import edgelink
from skyrelay.config import ClusterConfig

# Error codes shared with the client protocol.
_BAD_REQUEST = 107
_UNKNOWN_CHANNEL = 102
_NOT_AVAILABLE = 108


class RequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class Outcome:
    """What handling one request produced: the response, and pushes for subscribed edges."""

    response: bytes
    push: bytes | None = None
    push_to: list[Hashable] = field(default_factory=list)


class Shard:
    __slots__ = ("_idempotency", "config", "id", "published", "streams", "subscribers")

    def __init__(self, config: ClusterConfig, shard_id: str) -> None:
        self.config = config
        self.id = shard_id
        self.streams: dict[str, ChannelStream] = {}
        self.subscribers: dict[str, dict[Hashable, None]] = {}
        self._idempotency: dict[str, IdempotencyCache] = {}
        self.published = 0

    def stream(self, channel: str) -> ChannelStream:
        found = self.streams.get(channel)
        if found is None:
            ns = self.config.namespace(channel)
            if ns is None:
                raise RequestError(_UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")
            found = self.streams[channel] = ChannelStream(ns.history_size, ns.history_ttl)
        return found

    def handle(self, peer: Hashable, message: dict[str, Any], now: float) -> Outcome:
        req_id = message.get("id")
        if isinstance(req_id, bool) or not isinstance(req_id, int):
            raise edgelink.LinkProtocolError("request without an integer id")
        try:
            op = message.get("op")
            channel = message.get("ch")
            if not isinstance(channel, str) or not channel:
                raise RequestError(_BAD_REQUEST, "ch must be a non-empty string")
            if op == edgelink.OP_SUB:
                return Outcome(
                    edgelink.result(req_id, self._subscribe(peer, channel, message, now))
                )
            if op == edgelink.OP_UNSUB:
                self._unsubscribe(peer, channel)
                return Outcome(edgelink.result(req_id, {}))
            if op == edgelink.OP_PUB:
                return self._publish(req_id, channel, message, now)
            if op == edgelink.OP_HISTORY:
                return Outcome(edgelink.result(req_id, self._history(channel, message, now)))
            if op == edgelink.OP_READ:
                offset = _int_field(message, "offset", 0)
                limit = _int_field(message, "limit", -1)
                page = self.stream(channel).since(offset, limit, now)
                return Outcome(edgelink.result(req_id, _page(page)))
            raise RequestError(_BAD_REQUEST, f"unknown op {op!r}")
        except RequestError as exc:
            return Outcome(edgelink.error(req_id, exc.code, exc.message))

    def drop_peer(self, peer: Hashable) -> None:
        """Forget a link that went away."""
        for channel in [ch for ch, peers in self.subscribers.items() if peer in peers]:
            self._unsubscribe(peer, channel)

    def _subscribe(
        self, peer: Hashable, channel: str, message: dict[str, Any], now: float
    ) -> dict[str, Any]:
        stream = self.stream(channel)
        self.subscribers.setdefault(channel, {})[peer] = None
        since = message.get("since")
        if since is None:
            return {"epoch": stream.epoch, "offset": stream.top, "publications": []}
        if isinstance(since, bool) or not isinstance(since, int):
            raise RequestError(_BAD_REQUEST, "since must be an integer")
        limit = _int_field(message, "limit", -1)
        return _page(stream.since(since, limit, now))

    def _unsubscribe(self, peer: Hashable, channel: str) -> None:
        peers = self.subscribers.get(channel)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self.subscribers[channel]

    def _publish(self, req_id: int, channel: str, message: dict[str, Any], now: float) -> Outcome:
        if "data" not in message:
            raise RequestError(_BAD_REQUEST, "data is required")
        stream = self.stream(channel)
        key = message.get("ikey")
        cache: IdempotencyCache | None = None
        if key is not None:
            if not isinstance(key, str) or not key:
                raise RequestError(_BAD_REQUEST, "idempotency_key must be a non-empty string")
            cache = self._idempotency.get(channel)
            if cache is None:
                settings = self.config.origin
                cache = self._idempotency[channel] = IdempotencyCache(
                    settings.idempotency_window, settings.idempotency_max_keys
                )
            earlier = cache.get(key, now)
            if earlier is not None:
                return Outcome(edgelink.result(req_id, earlier))
        info = message.get("info")
        tags = message.get("tags")
        pub = stream.publish(
            message["data"],
            now,
            info=info if isinstance(info, dict) else None,
            tags=tags if isinstance(tags, dict) else None,
            skip_history=bool(message.get("skip_history")),
        )
        self.published += 1
        body = {"offset": pub.offset, "epoch": stream.epoch} if pub.offset else {}
        if cache is not None and key is not None:
            cache.put(key, body, now)
        peers = self.subscribers.get(channel)
        if not peers:
            return Outcome(edgelink.result(req_id, body))
        push = edgelink.pub_push(channel, stream.epoch, pub.to_wire())
        return Outcome(edgelink.result(req_id, body), push, list(peers))

    def _history(self, channel: str, message: dict[str, Any], now: float) -> dict[str, Any]:
        stream = self.stream(channel)
        ns = self.config.namespace(channel)
        if ns is not None and ns.history_size == 0:
            raise RequestError(_NOT_AVAILABLE, "history is off in this namespace")
        limit = _int_field(message, "limit", 0)
        since = message.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise RequestError(_BAD_REQUEST, "since must be an integer")
        page = stream.history(limit, now, since=since, reverse=bool(message.get("reverse")))
        return _page(page)


def _int_field(message: dict[str, Any], name: str, default: int) -> int:
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(_BAD_REQUEST, f"{name} must be an integer")
    return value


def _page(page: HistoryPage) -> dict[str, Any]:
    return {
        "publications": [p.to_wire() for p in page.publications],
        "epoch": page.epoch,
        "offset": page.offset,
    }


__all__ = ["Outcome", "Publication", "RequestError", "Shard"]
