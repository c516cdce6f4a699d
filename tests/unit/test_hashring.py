"""Replica placement on the hash ring, without sockets."""

from __future__ import annotations

from collections import Counter

import pytest

from skyrelay.ring import Member, Ring, moved_channels

CHANNELS = [f"ch-{i}" for i in range(5000)]


def ring_of(n: int, replication: int = 3, **weights: int) -> Ring:
    return Ring([Member(f"s{i}", weights.get(f"s{i}", 1)) for i in range(n)], replication)


def test_replica_set_is_r_distinct_shards_and_stable() -> None:
    ring, fresh = ring_of(5, 3), ring_of(5, 3)
    for ch in CHANNELS[:500]:
        replicas = ring.replicas(ch)
        assert len(replicas) == 3
        assert len(set(replicas)) == 3
        assert fresh.replicas(ch) == replicas  # same answer from another ring
        assert ring.owner(ch) == replicas[0]


def test_replication_is_capped_at_the_number_of_shards() -> None:
    assert len(ring_of(2, 3).replicas("x")) == 2


def test_primaries_spread_evenly_and_follow_weights() -> None:
    plain, heavy = ring_of(3), ring_of(3, s2=2)
    even = Counter(plain.owner(ch) for ch in CHANNELS)
    for count in even.values():
        assert abs(count / len(CHANNELS) - 1 / 3) < 0.08
    weighted = Counter(heavy.owner(ch) for ch in CHANNELS)
    assert weighted["s2"] > 1.5 * weighted["s0"]


def test_adding_a_shard_moves_about_one_nth_of_primaries() -> None:
    before, after = ring_of(3, 1), ring_of(4, 1)
    moved = moved_channels(before, after, CHANNELS) / len(CHANNELS)
    assert abs(moved - 0.25) < 0.25 * 0.3
    # Every moved channel moved to the new shard, never between old ones.
    for ch in CHANNELS:
        if before.owner(ch) != after.owner(ch):
            assert after.owner(ch) == "s3"


def test_lookups_are_cached_and_the_cache_is_bounded() -> None:
    ring = Ring([Member("a"), Member("b")], 2, cache_size=10)
    first = ring.replicas("chat")
    assert ring.replicas("chat") is first
    for ch in CHANNELS[:50]:
        ring.replicas(ch)
    assert len(ring._cache) <= 10


def test_bad_rings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        Ring([], 1)
    with pytest.raises(ValueError, match="replication"):
        Ring([Member("a")], 0)
