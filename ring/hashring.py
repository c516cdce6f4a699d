"""Consistent-hash placement of channels on shards (pure code, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from uhashring import HashRing

# Channel-to-replica-set lookups kept in memory; the cache is dropped whole when full,
# which keeps the hit path a single dict lookup.
DEFAULT_CACHE_SIZE = 100_000
# Points per unit of weight on the ring. More points even out the load at a small cost
# in ring size; 160 keeps the spread within a few percent for a handful of shards.
DEFAULT_VNODES = 160


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    weight: int = 1


class Ring:
    """Maps a channel to its ordered replica set: the first R distinct shards clockwise."""

    __slots__ = ("_cache", "_cache_size", "_hash", "members", "replication")

    def __init__(
        self,
        members: Iterable[Member],
        replication: int,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.members: tuple[Member, ...] = tuple(members)
        if not self.members:
            raise ValueError("a ring needs at least one member")
        if replication < 1:
            raise ValueError("replication must be at least 1")
        self.replication = min(replication, len(self.members))
        self._hash = HashRing(
            nodes={m.id: {"weight": m.weight, "vnodes": DEFAULT_VNODES} for m in self.members}
        )
        self._cache: dict[str, tuple[str, ...]] = {}
        self._cache_size = cache_size

    def replicas(self, channel: str) -> tuple[str, ...]:
        """The channel's shards in preference order; the first is its primary."""
        found = self._cache.get(channel)
        if found is None:
            found = tuple(
                node["nodename"]
                for node in self._hash.range(channel, self.replication, unique=True)
            )
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[channel] = found
        return found

    def owner(self, channel: str) -> str:
        return self.replicas(channel)[0]

    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    def without(self, member_id: str) -> Ring | None:
        """The ring before ``member_id`` joined (None if it would be empty)."""
        rest = [m for m in self.members if m.id != member_id]
        return Ring(rest, self.replication, cache_size=self._cache_size) if rest else None


def moved_channels(before: Ring, after: Ring, channels: Sequence[str]) -> int:
    """How many of ``channels`` change replica set between two rings."""
    return sum(1 for ch in channels if before.replicas(ch) != after.replicas(ch))
