"""The hot cache: a channel's most recent publications, kept by the edge that fans them out,
so a reconnecting client recovers without a round trip to the origin. Pure code.

The cache never serves what the channel's history would not: it keeps at most the namespace's
``history_size`` publications, and none older than its ``history_ttl``. So a warm edge and a
cold one (which reads the origin's history) give a recovering client the same answer.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from skyrelay.config import ClusterConfig

# Seconds before a publication's history TTL runs out at which the cache stops serving it and
# leaves the answer to the origin, whose clock may run a little ahead of the edge's.
TTL_MARGIN = 1.0


def cache_window(config: ClusterConfig, channel: str) -> tuple[int, float]:
    """How many publications of ``channel`` the cache may keep, and for how many seconds."""
    ns = config.namespace(channel)
    if ns is None:
        return 0, 0.0
    return min(config.edge.hot_cache_size, ns.history_size), ns.history_ttl


class RecentPublications:
    """The last ``size`` publications of one channel, contiguous, ending at the channel's top,
    each for ``ttl`` seconds from its ``time``."""

    __slots__ = ("_pubs", "_ttl_ms")

    def __init__(self, size: int, ttl: float = 0.0) -> None:
        self._pubs: deque[dict[str, Any]] = deque(maxlen=max(size, 0))
        self._ttl_ms = ttl * 1000

    def append(self, pub: dict[str, Any]) -> None:
        if self._pubs.maxlen:
            self._pubs.append(pub)

    def covers(self, offset: int, top: int, now: float) -> bool:
        """Whether everything after ``offset`` up to ``top`` is here, and still in history."""
        if offset > top:
            return False
        if offset == top:
            return True
        self._expire(now)
        return bool(self._pubs) and self._pubs[0]["offset"] <= offset + 1

    def _expire(self, now: float) -> None:
        if not self._ttl_ms:
            return
        horizon_ms = (now + TTL_MARGIN) * 1000 - self._ttl_ms
        pubs = self._pubs
        while pubs and pubs[0].get("time", 0) <= horizon_ms:
            pubs.popleft()

    def get(self, offset: int) -> dict[str, Any] | None:
        """The publication at ``offset`` if it is here (the last one is found at once)."""
        pubs = self._pubs
        if not pubs or not pubs[0]["offset"] <= offset <= pubs[-1]["offset"]:
            return None
        pub = pubs[offset - pubs[0]["offset"]]
        return pub if pub["offset"] == offset else None

    def after(self, offset: int, limit: int) -> list[dict[str, Any]]:
        found = [p for p in self._pubs if p["offset"] > offset]
        return found[:limit] if limit >= 0 else found

    def clear(self) -> None:
        self._pubs.clear()

    def __len__(self) -> int:
        return len(self._pubs)
