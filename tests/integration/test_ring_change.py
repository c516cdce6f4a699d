"""Adding a shard under traffic: only about 1/N of the channels move, with their history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from skyrelay.ring import Member, Ring, moved_channels
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import start_cluster
from tests.integration.test_failover import (
    api_history_retry,
    leaders,
    subscribers,
    traffic_flowing,
)
from tests.support.helpers import until
from tests.support.load import Acks, check_deliveries, publish

pytestmark = pytest.mark.timeout(240)

CHANNELS = [f"fo:ring{i}" for i in range(20)]


@pytest.fixture
def cluster_r2(tmp_path: Path) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path, replication=2)
    yield c
    c.stop()


def test_adding_a_fourth_shard_moves_about_a_quarter_of_the_channels() -> None:
    sample = [f"channel-{i}" for i in range(1000)]
    before = Ring([Member(f"o{i}") for i in range(3)], 2)
    after = Ring([Member(f"o{i}") for i in range(4)], 2)
    primaries = sum(1 for ch in sample if before.owner(ch) != after.owner(ch)) / len(sample)
    sets = moved_channels(before, after, sample) / len(sample)
    print(
        f"\nring 3 -> 4 shards, R=2: primaries moved {primaries:.1%}, replica sets changed {sets:.1%}"
    )
    assert abs(primaries - 0.25) <= 0.25 * 0.3
    # Every change brings in the new shard; no channel moves between old shards.
    for ch in sample:
        if before.replicas(ch) != after.replicas(ch):
            assert "o3" in after.replicas(ch)


async def test_shard_added_under_traffic_loses_and_duplicates_nothing(
    cluster_r2: LocalCluster, session: aiohttp.ClientSession
) -> None:
    recorders = await subscribers(session, cluster_r2, CHANNELS)
    acks = Acks()
    loop = asyncio.get_running_loop()
    start = loop.time()
    rate, duration = 10, 8.0

    async def publisher(channel: str, edge: int) -> None:
        api = f"{cluster_r2.edge_url(edge)}/api"
        for n in range(int(rate * duration)):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await publish(session, api, channel, {"n": n}, f"{channel}-{n}", acks, start + 60)

    tasks = [asyncio.ensure_future(publisher(ch, i % 2)) for i, ch in enumerate(CHANNELS)]
    # Add the shard once traffic flows: 30 publications acked in every channel (~3 s).
    await until(lambda: traffic_flowing(acks, CHANNELS, 30), timeout=30, what="traffic")
    added = await asyncio.get_running_loop().run_in_executor(None, cluster_r2.add_shard)
    await asyncio.gather(*tasks)

    assert not acks.other_errors
    assert sum(len(a) for a in acks.acked.values()) == len(CHANNELS) * int(rate * duration)
    await until(lambda: all(r.has_all(acks) for r in recorders), timeout=30, what="deliveries")
    for recorder in recorders:
        check_deliveries(recorder, acks)
        assert recorder.unsubscribed == []
        assert recorder.client.close_code is None

    new_ring = Ring([Member(f"o{i}") for i in range(4)], 2)
    moved = [ch for ch in CHANNELS if new_ring.owner(ch) == added]
    assert moved, "no test channel moved to the new shard"
    led = await leaders(session, cluster_r2)
    for ch in moved:
        assert led.get(ch) == added, f"{ch} is led by {led.get(ch)}"
        history = await api_history_retry(session, cluster_r2, ch)
        assert {p["offset"]: p["data"] for p in history} == acks.acked[ch]
    for recorder in recorders:
        await recorder.close()
