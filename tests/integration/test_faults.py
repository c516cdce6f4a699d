"""Network faults between edges and origins, through the fault-injecting proxy.

Each test runs a cluster (3 shards, replication 3, 2 edges) whose edges reach every origin
through a ``FaultProxy`` (the shards reach each other directly), publishes under load with
idempotency keys, and checks what every subscriber got: each acked publication exactly once,
offsets consecutive, the same publication at each offset on both edges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from skyrelay.testing.faultproxy import FaultProxy, Faults
from tests.integration.conftest import API_KEY, TOKEN_SECRET, free_spec
from tests.integration.test_failover import subscribers, traffic_flowing
from tests.support.helpers import until
from tests.support.load import Acks, Recorder, check_deliveries, publish

pytestmark = pytest.mark.timeout(120)

CHANNELS = [f"fo:nf{i}" for i in range(10)]
RATE = 10  # publications per second per channel
COUNT = 80  # per channel


@dataclasses.dataclass
class Proxied:
    cluster: LocalCluster
    proxies: list[FaultProxy]  # proxies[i] stands between the edges and origin i


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Proxied]:
    for attempt in range(3):
        spec = free_spec()
        proxies = [
            await FaultProxy("127.0.0.1", spec.origin_port(i), seed=i).start()
            for i in range(spec.origins)
        ]
        spec = dataclasses.replace(spec, edge_origin_ports=tuple(p.port for p in proxies))
        cluster = LocalCluster(spec, tmp_path, TOKEN_SECRET, API_KEY, log_dir=tmp_path / "logs")
        try:
            # Blocking start-up in a thread: the proxies run in this event loop.
            await asyncio.to_thread(cluster.start)
        except RuntimeError:
            for proxy in proxies:
                await proxy.close()
            if attempt == 2:
                raise
            continue  # a port was taken between the check and the bind
        try:
            yield Proxied(cluster, proxies)
        finally:
            await asyncio.to_thread(cluster.stop)
            for proxy in proxies:
                await proxy.close()
        return


async def edge_metric(session: aiohttp.ClientSession, url: str, pattern: str) -> float:
    """The sum of the samples whose name and labels match ``pattern``."""
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = re.findall(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    return sum(float(v) for v in found)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def seen_by_edges(
    session: aiohttp.ClientSession, cluster: LocalCluster, shard: str, up: bool
) -> bool:
    pattern = rf'skyrelay_edge_shard_up\{{shard="{shard}"\}}'
    for edge in range(cluster.spec.edges):
        if await edge_metric(session, cluster.edge_url(edge), pattern) != float(up):
            return False
    return True


async def run_traffic(
    cluster: LocalCluster,
    session: aiohttp.ClientSession,
    recorders: list[Recorder],
    faults: Callable[[Acks], Awaitable[None]],
) -> Acks:
    """Publish COUNT per channel through both edges while ``faults`` runs; return the acks
    once every subscriber has every acked publication."""
    acks = Acks()
    loop = asyncio.get_running_loop()
    start = loop.time()
    give_up = start + COUNT / RATE + 40

    async def publisher(channel: str, edge: int) -> None:
        api = f"{cluster.edge_url(edge)}/api"
        for n in range(COUNT):
            delay = start + n / RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await publish(session, api, channel, {"n": n}, f"{channel}-{n}", acks, give_up)

    tasks = [asyncio.ensure_future(publisher(ch, i % 2)) for i, ch in enumerate(CHANNELS)]
    try:
        await faults(acks)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    assert not acks.other_errors
    missing = {ch: COUNT - len(acks.acked.get(ch, {})) for ch in CHANNELS}
    assert not any(missing.values()), f"not acked: {missing}"
    await until(lambda: all(r.has_all(acks) for r in recorders), timeout=30, what="deliveries")
    return acks


def check_everything_arrived_once(recorders: list[Recorder], acks: Acks) -> None:
    for recorder in recorders:
        check_deliveries(recorder, acks)
        assert recorder.unsubscribed == []  # no loss was signalled either
        assert recorder.client.close_code is None  # and no client had to reconnect
        for channel in CHANNELS:
            published = [data["n"] for _, data, _ in recorder.got[channel]]
            assert sorted(published) == list(range(COUNT)), f"{channel}: published twice?"
    for channel in CHANNELS:
        a, b = (dict((o, d) for o, d, _ in r.got[channel]) for r in recorders)
        assert a == b


async def test_latency_jitter_and_stalls_keep_delivery_ordered_and_gapless(
    proxied: Proxied, session: aiohttp.ClientSession
) -> None:
    cluster = proxied.cluster
    for proxy in proxied.proxies:
        proxy.faults = Faults(latency=0.003, jitter=0.01, loss=0.02, loss_delay=0.15)
    recorders = await subscribers(session, cluster, CHANNELS)

    async def stalls(acks: Acks) -> None:
        await until(lambda: traffic_flowing(acks, CHANNELS, 10), timeout=30, what="traffic")
        # A path goes silent until both edges give up on the shard behind it, then comes
        # back; their channels move away and back under load.
        for victim in (0, 1):
            proxied.proxies[victim].stall()
            shard = f"o{victim}"
            down = functools.partial(seen_by_edges, session, cluster, shard, False)
            await eventually(down, timeout=20, what=f"edges to see {shard} down")
            proxied.proxies[victim].resume()
            up = functools.partial(seen_by_edges, session, cluster, shard, True)
            await eventually(up, timeout=20, what=f"edges to see {shard} up")

    acks = await run_traffic(cluster, session, recorders, stalls)
    check_everything_arrived_once(recorders, acks)
    moves = await edge_metric(session, cluster.edge_url(0), "skyrelay_edge_channel_moves_total")
    held = sum(p.stats.held for p in proxied.proxies)
    print(f"\nstalls: {moves:.0f} channel moves at edge 0, {held} chunks held as lost")
    assert moves > 0 and held > 0  # the faults did happen
    for recorder in recorders:
        await recorder.close()


async def test_connection_resets_keep_delivery_ordered_and_gapless(
    proxied: Proxied, session: aiohttp.ClientSession
) -> None:
    cluster = proxied.cluster
    for proxy in proxied.proxies:
        proxy.faults = Faults(latency=0.002, jitter=0.004, reset=0.004)
    recorders = await subscribers(session, cluster, CHANNELS)

    async def cuts(acks: Acks) -> None:
        # Besides the random resets, cut every link to each shard in turn, mid-traffic.
        for step, victim in enumerate((0, 1, 2, 0)):
            target = 10 + 15 * step
            await until(functools.partial(traffic_flowing, acks, CHANNELS, target), timeout=30)
            proxied.proxies[victim].cut()

    acks = await run_traffic(cluster, session, recorders, cuts)
    check_everything_arrived_once(recorders, acks)
    resets = sum(p.stats.resets for p in proxied.proxies)
    reconnects = [
        await edge_metric(
            session, cluster.edge_url(e), r"skyrelay_edge_link_reconnects_total\{.*\}"
        )
        for e in range(cluster.spec.edges)
    ]
    print(f"\nresets: {resets} connections reset, link reconnects per edge {reconnects}")
    assert resets >= 4
    # Every edge linked again after the cuts: more connects than its 3 first ones.
    assert all(r > cluster.spec.origins for r in reconnects)
    for recorder in recorders:
        await recorder.close()
