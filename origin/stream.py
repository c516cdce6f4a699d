"""One channel's stream: its position (epoch, offset) and its bounded history. Pure code."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def new_epoch() -> str:
    """A fresh stream identity: positions from another epoch never recover into this one."""
    return secrets.token_hex(4)


@dataclass(slots=True)
class Publication:
    """A publication as stored and sent on the edge link (``offset`` 0 = not in history)."""

    offset: int
    data: Any
    time: int = 0
    info: dict[str, Any] | None = None
    tags: dict[str, str] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The client-protocol Publication object, zero values omitted."""
        out: dict[str, Any] = {"data": self.data}
        if self.info is not None:
            out["info"] = self.info
        if self.offset:
            out["offset"] = self.offset
        if self.tags:
            out["tags"] = self.tags
        if self.time:
            out["time"] = self.time
        return out


@dataclass(frozen=True, slots=True)
class HistoryPage:
    publications: list[Publication]
    epoch: str
    offset: int


class ChannelStream:
    """Orders a channel's publications and keeps the last ``size`` of them for ``ttl`` seconds."""

    __slots__ = ("_entries", "epoch", "size", "top", "ttl")

    def __init__(self, size: int, ttl: float, epoch_factory: Callable[[], str] = new_epoch) -> None:
        self.size = size
        self.ttl = ttl
        self.epoch = epoch_factory()
        self.top = 0
        # (publication, expires_at) oldest first; offsets are consecutive.
        self._entries: deque[tuple[Publication, float]] = deque()

    def publish(
        self,
        data: Any,
        now: float,
        *,
        info: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
    ) -> Publication:
        """Assign the next offset and keep the publication in history."""
        time_ms = int(now * 1000)
        if skip_history or self.size == 0:
            return Publication(0, data, time_ms, info, tags)
        self.top += 1
        pub = Publication(self.top, data, time_ms, info, tags)
        self._entries.append((pub, now + self.ttl))
        if len(self._entries) > self.size:
            self._entries.popleft()
        return pub

    def trim(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][1] <= now:
            entries.popleft()

    def since(self, offset: int, limit: int, now: float) -> HistoryPage:
        """Publications after ``offset``, oldest first, at most ``limit`` of them.

        The caller decides whether the page is a gapless continuation (see recovery).
        """
        self.trim(now)
        entries = self._entries
        if not entries or offset >= self.top:
            return HistoryPage([], self.epoch, self.top)
        first = entries[0][0].offset
        start = max(offset + 1 - first, 0)
        stop = min(start + limit, len(entries)) if limit >= 0 else len(entries)
        pubs = [entries[i][0] for i in range(start, stop)]
        return HistoryPage(pubs, self.epoch, self.top)

    def history(
        self, limit: int, now: float, *, since: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        """The history command: ``limit`` 0 = position only, negative = all that is kept."""
        self.trim(now)
        if limit == 0:
            return HistoryPage([], self.epoch, self.top)
        pubs = [entry[0] for entry in self._entries]
        if reverse:
            if since is not None:
                pubs = [p for p in pubs if p.offset < since]
            pubs.reverse()
        elif since is not None:
            pubs = [p for p in pubs if p.offset > since]
        if limit > 0:
            pubs = pubs[:limit]
        return HistoryPage(pubs, self.epoch, self.top)

    def clear(self) -> None:
        """Drop the publications but keep the position (history_remove)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
