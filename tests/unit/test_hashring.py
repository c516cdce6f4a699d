"""Replica placement on the hash ring, without sockets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

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


ZONES = ("a", "b", "c")
SAMPLE = [f"ch-{i}" for i in range(10_000)]


def zoned(count: int, zones: tuple[str, ...] = ZONES) -> list[Member]:
    return [Member(f"s{i}", 1, zones[i % len(zones)]) for i in range(count)]


@pytest.mark.parametrize(("shards", "replication"), [(6, 3), (7, 3), (9, 3), (4, 2), (5, 5)])
def test_every_replica_set_spans_the_zones_it_can(shards: int, replication: int) -> None:
    ring = Ring(zoned(shards), replication)
    zone_of = ring.zones()
    can_span = min(replication, len(ZONES))
    for ch in SAMPLE:
        members = ring.replicas(ch)
        assert len(set(members)) == replication
        assert len({zone_of[m] for m in members}) == can_span, ch


def test_zones_keep_the_primary_and_the_clockwise_order() -> None:
    plain = Ring([Member(m.id) for m in zoned(6)], 3)
    ring = Ring(zoned(6), 3)
    for ch in SAMPLE[:2000]:
        assert ring.owner(ch) == plain.owner(ch)
    one_zone = Ring(zoned(6, ("only",)), 3)
    assert all(one_zone.replicas(ch) == plain.replicas(ch) for ch in SAMPLE[:2000])


@pytest.mark.parametrize("grown", [zoned(7), [*zoned(6), Member("s6", 1, "b")]])
def test_a_zoned_scale_up_moves_close_to_the_ideal_fraction(grown: list[Member]) -> None:
    before, after = Ring(zoned(6), 3), Ring(grown, 3)
    moved = moved_channels(before, after, SAMPLE) / len(SAMPLE)
    # A new shard joins a channel's set with probability R/N without zones; with one shard
    # per zone in each set, it joins when it comes first in its zone (1/3 here).
    ideal = 3 / 7
    assert moved <= ideal * 1.1, moved
    zone_of = after.zones()
    assert all(len({zone_of[m] for m in after.replicas(ch)}) == 3 for ch in SAMPLE)
    # Nothing moves that the new shard did not join.
    assert all(
        "s6" in after.replicas(ch) for ch in SAMPLE if before.replicas(ch) != after.replicas(ch)
    )


def test_rings_of_shards_carry_their_zones() -> None:
    @dataclass
    class Shard:
        id: str
        weight: int = 1
        zone: str = ""

    ring = Ring.of_shards([Shard("o0", zone="a"), Shard("o1", zone="b"), Shard("o2")], 2)
    assert ring.zones() == {"o0": "a", "o1": "b", "o2": ""}
