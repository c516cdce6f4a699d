"""The hot cache: a channel's most recent publications, kept by the edge that fans them out,
so a reconnecting client recovers without a round trip to the origin. Pure code."""

from __future__ import annotations

from collections import deque
from typing import Any


class RecentPublications:
    """The last ``size`` publications of one channel, contiguous, ending at the channel's top."""

    __slots__ = ("_pubs",)

    def __init__(self, size: int) -> None:
        self._pubs: deque[dict[str, Any]] = deque(maxlen=max(size, 0))

    def append(self, pub: dict[str, Any]) -> None:
        if self._pubs.maxlen:
            self._pubs.append(pub)

    def covers(self, offset: int, top: int) -> bool:
        """Whether everything after ``offset`` up to ``top`` is here."""
        if offset > top:
            return False
        if offset == top:
            return True
        return bool(self._pubs) and self._pubs[0]["offset"] <= offset + 1

    def after(self, offset: int, limit: int) -> list[dict[str, Any]]:
        found = [p for p in self._pubs if p["offset"] > offset]
        return found[:limit] if limit >= 0 else found

    def clear(self) -> None:
        self._pubs.clear()

    def __len__(self) -> int:
        return len(self._pubs)
