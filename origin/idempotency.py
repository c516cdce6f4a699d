"""Remembers publish results by idempotency key for a window, so retries are not republished."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class IdempotencyCache:
    __slots__ = ("_entries", "max_keys", "window")

    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        # key -> (result, expires_at), oldest first
        self._entries: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def get(self, key: str, now: float) -> dict[str, Any] | None:
        self._expire(now)
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: str, value: dict[str, Any], now: float) -> None:
        self._entries[key] = (value, now + self.window)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (_, expires_at) = next(iter(entries.items()))
            if expires_at > now:
                break
            del entries[key]

    def __len__(self) -> int:
        return len(self._entries)
