"""Consistent-hash placement of channels on shards (pure code, no I/O).

A channel's replica set is the first R distinct shards clockwise from its hash. Shards may carry
a zone (a failure domain: an availability zone, a rack); then the set takes the first shard of
each zone clockwise before it takes a second shard of any zone, so that it spans as many zones
as it can, and "a majority holds it" means "it is in two zones". Shards without a zone share
the zone "". The set keeps the clockwise order: its first member is still the first shard
clockwise, so a ring without zones places every channel as before.

What belongs here: placement. What never does: health, links, or where members come from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

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
    zone: str = ""


class ShardLike(Protocol):
    """A shard as the config describes it (``skyrelay.config.ShardConfig``)."""

    @property
    def id(self) -> str: ...  # pragma: no cover

    @property
    def weight(self) -> int: ...  # pragma: no cover

    @property
    def zone(self) -> str: ...  # pragma: no cover


class Ring:
    """Maps a channel to its ordered replica set: the first R distinct shards clockwise."""

    __slots__ = ("_cache", "_cache_size", "_hash", "_zones", "members", "replication")

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
        # member -> zone, only when there are two zones or more (else placement ignores them)
        zones = {m.id: m.zone for m in self.members}
        self._zones = zones if len(set(zones.values())) > 1 else None

    @classmethod
    def of_shards(cls, shards: Iterable[ShardLike], replication: int) -> Ring:
        return cls((Member(s.id, s.weight, s.zone) for s in shards), replication)

    def replicas(self, channel: str) -> tuple[str, ...]:
        """The channel's shards in preference order; the first is its primary."""
        found = self._cache.get(channel)
        if found is None:
            found = self._place(channel)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[channel] = found
        return found

    def _place(self, channel: str) -> tuple[str, ...]:
        zones = self._zones
        if zones is None:
            nodes = self._hash.range(channel, self.replication, unique=True)
            return tuple(node["nodename"] for node in nodes)
        clockwise = [node["nodename"] for node in self._hash.range(channel, None, unique=True)]
        chosen: set[str] = set()
        spanned: set[str] = set()
        for member in clockwise:  # the first of each zone
            if len(chosen) == self.replication:
                break
            if zones[member] not in spanned:
                spanned.add(zones[member])
                chosen.add(member)
        for member in clockwise:  # then the next ones, whatever their zone
            if len(chosen) == self.replication:
                break
            chosen.add(member)
        return tuple(m for m in clockwise if m in chosen)

    def zones(self) -> dict[str, str]:
        """Each member's zone."""
        return {m.id: m.zone for m in self.members}

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
