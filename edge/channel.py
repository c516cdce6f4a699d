"""One channel with local subscribers, as the hub keeps it: its state, its stream position,
its hot cache, who is subscribed and who is on the way, and what waits to be handed out.

Plain state: the hub (``edge.hub``) moves it through its states and the batching
(``edge.batches``) hands out what waits. This module does nothing by itself.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any, Protocol

from skyrelay.edge.cache import RecentPublications
from skyrelay.edge.outbox import Outgoing
from skyrelay.link.client import LinkClient


class Subscriber(Protocol):
    def deliver(self, message: Outgoing) -> None: ...  # pragma: no cover
    def wants_join_leave(self, channel: str) -> bool: ...  # pragma: no cover
    def lost_channel(self, channel: str, code: int, reason: str) -> None: ...  # pragma: no cover


class ChannelState(Enum):
    SUBSCRIBING = "subscribing"  # first upstream subscribe in flight
    LIVE = "live"  # publications flow from ``link``
    MOVING = "moving"  # resubscribing at the (new) leader from the last offset
    GONE = "gone"  # dropped from the hub


class Channel:
    __slots__ = (
        "early",
        "epoch",
        "expiry",
        "holds",
        "joining",
        "link",
        "mover",
        "name",
        "offset",
        "outgoing",
        "presence",
        "ready",
        "recent",
        "state",
        "subscribers",
        "target",
        "wanted",
    )

    def __init__(self, name: str, ready: asyncio.Future[None], window: tuple[int, float]) -> None:
        self.name = name
        # The hot cache of recent publications, and the timer that drops an unused channel.
        self.recent = RecentPublications(*window)
        # Local clients reported to the leader as present: client id -> what was sent.
        self.presence: dict[str, dict[str, Any]] = {}
        self.expiry: asyncio.TimerHandle | None = None
        self.link: LinkClient | None = None
        self.state = ChannelState.SUBSCRIBING
        self.ready = ready
        self.epoch = ""
        self.offset = 0
        # Clients holding the channel: subscribed, or on their way (counts both).
        self.holds = 0
        self.subscribers: dict[Subscriber, None] = {}
        # Publications of this loop turn not yet handed to the subscribers: they go out as
        # one batch at the end of the turn (edge/batches.py).
        self.outgoing: list[Outgoing] = []
        # Subscribers whose reply is not out yet -> publications pushed meanwhile.
        self.joining: dict[Subscriber, list[dict[str, Any]]] = {}
        # The shard a redirect or a moved push named, for the next move attempt.
        self.target: str | None = None
        # Pushes that arrived while a subscribe was in flight. The link delivers a subscribe
        # answer and the pushes that follow it in one frame, before the waiting coroutine
        # runs; they are replayed once the answer is applied.
        self.early: list[tuple[LinkClient, dict[str, Any]]] = []
        # A move was asked for since the current attempt started.
        self.wanted = False
        self.mover: asyncio.Task[None] | None = None
