"""Replicated shards under real failures: SIGKILL, SIGSTOP/SIGCONT, and restarts.

Each test runs its own cluster (3 shards, replication 3, 2 edges) and counts what arrived.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from skyrelay.ring import Member, Ring
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import until
from tests.support.load import Acks, Recorder, check_deliveries, publish
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(240)

CHANNELS = [f"fo:ch{i}" for i in range(20)]
RING = Ring([Member(f"o{i}") for i in range(3)], 3)


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path)
    yield c
    c.stop()


async def status(session: aiohttp.ClientSession, cluster: LocalCluster, i: int) -> dict[str, Any]:
    async with session.get(f"{cluster.origin_url(i)}/status") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def leaders(session: aiohttp.ClientSession, cluster: LocalCluster) -> dict[str, str]:
    """channel -> shard that leads it, from the shards still running."""
    found: dict[str, str] = {}
    for i in range(cluster.spec.origins):
        if cluster.processes[f"o{i}"].poll() is not None:
            continue
        for channel, state in (await status(session, cluster, i))["channels"].items():
            if state["role"] == "leader":
                found[channel] = f"o{i}"
    return found


async def subscribers(
    session: aiohttp.ClientSession, cluster: LocalCluster, channels: list[str]
) -> list[Recorder]:
    recorders = []
    for edge in (0, 1):
        client, _ = await connect_raw(session, cluster.ws_url(edge), token(f"sub{edge}"))
        for channel in channels:
            reply = await client.command("subscribe", {"channel": channel})
            assert "subscribe" in reply, reply
        recorders.append(Recorder(client))
    return recorders


def traffic_flowing(acks: Acks, channels: list[str], count: int) -> bool:
    return all(len(acks.acked.get(ch, {})) >= count for ch in channels)


async def test_primary_killed_under_load_loses_nothing_acked(
    cluster3: LocalCluster, session: aiohttp.ClientSession
) -> None:
    recorders = await subscribers(session, cluster3, CHANNELS)
    acks = Acks()
    loop = asyncio.get_running_loop()
    rate_per_channel = 10  # 20 channels x 10/s = 200 publications/s
    duration = 10.0
    start = loop.time()
    give_up = start + duration + 30
    sent_at: dict[tuple[str, int], float] = {}

    async def publisher(channel: str, edge: int) -> None:
        api = f"{cluster3.edge_url(edge)}/api"
        for n in range(int(duration * rate_per_channel)):
            delay = start + n / rate_per_channel - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[channel, n] = time.monotonic()
            await publish(session, api, channel, {"n": n}, f"{channel}-{n}", acks, give_up)

    tasks = [asyncio.ensure_future(publisher(ch, i % 2)) for i, ch in enumerate(CHANNELS)]
    # Let traffic flow before the failure: 30 publications acked in every channel (~3 s).
    await until(lambda: traffic_flowing(acks, CHANNELS, 30), timeout=30, what="traffic")
    led = await leaders(session, cluster3)
    victim = max(("o0", "o1", "o2"), key=lambda s: sum(1 for v in led.values() if v == s))
    affected = [ch for ch, shard in led.items() if shard == victim]
    killed_at = time.monotonic()
    cluster3.signal(victim, signal.SIGKILL)
    await asyncio.gather(*tasks)

    total = sum(len(a) for a in acks.acked.values())
    assert not acks.other_errors
    assert total == len(CHANNELS) * int(duration * rate_per_channel)
    await until(lambda: all(r.has_all(acks) for r in recorders), timeout=30, what="deliveries")
    for recorder in recorders:
        check_deliveries(recorder, acks)
        assert recorder.unsubscribed == []
        assert recorder.client.close_code is None  # no client reconnect
    # Both edges saw the same publication at every offset.
    for channel in CHANNELS:
        a, b = (dict((o, d) for o, d, _ in r.got[channel]) for r in recorders)
        assert a == b

    # Kill -> first delivery of a publication sent after the kill, on the killed leader's
    # channels (each channel publishes every 100 ms, which bounds how soon that can be).
    firsts = []
    for channel in affected:
        arrivals = [
            t for _, data, t in recorders[0].got[channel] if sent_at[channel, data["n"]] > killed_at
        ]
        if arrivals:
            firsts.append(min(arrivals) - killed_at)
    print(
        f"\nfailover: killed {victim} leading {len(affected)} channels; kill -> first delivery "
        f"from the new leader: median {statistics.median(firsts) * 1000:.0f} ms, "
        f"max {max(firsts) * 1000:.0f} ms; {total} acked, 0 lost, 0 duplicated, "
        f"{acks.temporary_errors} temporary errors retried"
    )
    for recorder in recorders:
        await recorder.close()


async def test_replica_killed_writes_go_on_and_it_returns_as_primary(
    cluster3: LocalCluster, session: aiohttp.ClientSession
) -> None:
    victim = "o2"
    # Channels that o2 leads when healthy, and channels where it is only a replica.
    preferred = [ch for ch in (f"fo:r{i}" for i in range(200)) if RING.owner(ch) == victim][:5]
    others = [ch for ch in (f"fo:s{i}" for i in range(200)) if RING.owner(ch) != victim][:5]
    acks = Acks()
    api = f"{cluster3.edge_url(0)}/api"
    give_up = asyncio.get_running_loop().time() + 60
    for n in range(5):
        for ch in preferred + others:
            await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, give_up)
    led = await leaders(session, cluster3)
    assert all(led[ch] == victim for ch in preferred)

    cluster3.signal(victim, signal.SIGKILL)
    cluster3.processes[victim].wait(10)
    errors_before = acks.temporary_errors
    for n in range(5, 10):
        for ch in others:
            result = await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, give_up)
            assert result is not None
    assert acks.temporary_errors == errors_before  # writes went on without error

    cluster3.restart(victim)
    await until_healthy(session, cluster3, victim)
    for ch in preferred:
        await publish(session, api, ch, {"n": 5}, f"{ch}-5", acks, give_up)
    led = await leaders(session, cluster3)
    assert all(led[ch] == victim for ch in preferred), led
    for ch in preferred + others:
        history = await api_history(session, cluster3, ch)
        assert {p["offset"]: p["data"] for p in history} == acks.acked[ch]
    state = (await status(session, cluster3, 2))["channels"]
    for ch in others:  # caught up as a replica too
        assert state[ch]["top"] == max(acks.acked[ch])


async def until_healthy(session: aiohttp.ClientSession, cluster: LocalCluster, shard: str) -> None:
    """Wait until every other process sees ``shard`` up again."""

    async def seen_up() -> bool:
        for i in range(3):
            if f"o{i}" == shard:
                continue
            if (await status(session, cluster, i))["peers"].get(shard) != "up":
                return False
        return True

    deadline = asyncio.get_running_loop().time() + 20
    while not await seen_up():
        assert asyncio.get_running_loop().time() < deadline, f"{shard} not seen up"
        await asyncio.sleep(0.05)


async def api_history(
    session: aiohttp.ClientSession, cluster: LocalCluster, channel: str
) -> list[dict[str, Any]]:
    async with session.post(
        f"{cluster.edge_url(1)}/api/history",
        json={"channel": channel, "limit": -1},
        headers={"X-API-Key": API_KEY},
    ) as resp:
        answer = await resp.json()
    assert "result" in answer, answer
    publications: list[dict[str, Any]] = answer["result"]["publications"]
    return publications


async def test_two_of_three_killed_nothing_is_acked_and_nothing_acked_is_lost(
    cluster3: LocalCluster, session: aiohttp.ClientSession
) -> None:
    channels = CHANNELS[:6]
    acks = Acks()
    api = f"{cluster3.edge_url(0)}/api"
    loop = asyncio.get_running_loop()
    for n in range(5):
        for ch in channels:
            await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, loop.time() + 30)
    before = {ch: dict(v) for ch, v in acks.acked.items()}

    for victim in ("o1", "o2"):
        cluster3.signal(victim, signal.SIGKILL)
        cluster3.processes[victim].wait(10)
    failed = Acks()
    results = await asyncio.gather(
        *(
            publish(session, api, ch, {"n": 99}, f"{ch}-lost", failed, loop.time() + 4)
            for ch in channels
        )
    )
    assert results == [None] * len(channels)
    assert failed.acked == {}
    assert failed.temporary_errors > 0 and failed.other_errors == []

    for victim in ("o1", "o2"):
        cluster3.restart(victim)
    for ch in channels:
        history = await api_history_retry(session, cluster3, ch)
        got = {p["offset"]: p["data"] for p in history}
        for offset, data in before[ch].items():
            assert got[offset] == data


async def api_history_retry(
    session: aiohttp.ClientSession, cluster: LocalCluster, channel: str
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with session.post(
            f"{cluster.edge_url(1)}/api/history",
            json={"channel": channel, "limit": -1},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            answer = await resp.json()
        if "result" in answer:
            publications: list[dict[str, Any]] = answer["result"]["publications"]
            return publications
        assert answer["error"].get("temporary"), answer
        assert asyncio.get_running_loop().time() < deadline, answer
        await asyncio.sleep(0.1)


async def test_paused_primary_is_fenced_and_cannot_ack(
    cluster3: LocalCluster, session: aiohttp.ClientSession
) -> None:
    channels = CHANNELS[:6]
    recorders = await subscribers(session, cluster3, channels)
    acks = Acks()
    loop = asyncio.get_running_loop()
    api = f"{cluster3.edge_url(0)}/api"
    for ch in channels:
        await publish(session, api, ch, {"n": 0}, f"{ch}-0", acks, loop.time() + 30)
    led = await leaders(session, cluster3)
    victim = led[channels[0]]
    victims_channels = [ch for ch in channels if led[ch] == victim]

    cluster3.signal(victim, signal.SIGSTOP)
    # Publishes race the takeover: some reach the paused leader and wait in its socket.
    stop_window = [
        asyncio.ensure_future(
            publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, loop.time() + 20)
        )
        for n in range(1, 4)
        for ch in channels
    ]
    await until(
        lambda: all(r.has_all(acks) for r in recorders) and all(t.done() for t in stop_window),
        timeout=40,
        what="publications acked by the new leaders",
    )
    cluster3.signal(victim, signal.SIGCONT)
    # The resumed shard learns it was deposed; then everything keeps flowing.
    for n in range(4, 8):
        for ch in channels:
            await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, loop.time() + 30)
    await until(lambda: all(r.has_all(acks) for r in recorders), timeout=30, what="deliveries")
    for recorder in recorders:
        check_deliveries(recorder, acks)
        assert recorder.unsubscribed == []
    for ch in victims_channels:
        a, b = (dict((o, d) for o, d, _ in r.got[ch]) for r in recorders)
        assert a == b
        assert len(acks.acked[ch]) == 8  # each of the 8 publications acked exactly once
    for recorder in recorders:
        await recorder.close()
