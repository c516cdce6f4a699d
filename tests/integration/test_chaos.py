"""A randomized fault schedule against a durable cluster: SIGKILLs and restarts, SIGSTOP
pauses, partitions between the edges and a shard (through fault proxies), whole-tier crashes and
SIGTERM restarts, one after another, while publishers with idempotency keys and recovering
subscribers check that nothing acked is lost, duplicated or reordered.

The schedule comes from a seed, printed first; the same seed replays the same schedule:

    SKYRELAY_CHAOS_SEED=1234 make chaos

`make test` runs a short schedule (SKYRELAY_CHAOS_SECONDS, 20 s); `make chaos` a long one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from skyrelay.testing.faultproxy import FaultProxy
from tests.integration.conftest import API_KEY, TOKEN_SECRET, free_spec
from tests.support.helpers import until
from tests.support.load import (
    Acks,
    check_deliveries,
    history,
    publish_steadily,
    subscribed_recorders,
)

SEED = int(os.environ.get("SKYRELAY_CHAOS_SEED") or random.randrange(2**31))
SECONDS = float(os.environ.get("SKYRELAY_CHAOS_SECONDS") or 20)
FAULTS = ("kill", "pause", "partition", "tier_crash", "sigterm")
ORIGINS = ("o0", "o1", "o2")
# Seconds a shard may take to be /ready again after a fault.
RECOVERY = 60.0

pytestmark = pytest.mark.timeout(SECONDS + 300)


@dataclass(frozen=True)
class Step:
    kind: str
    target: str
    # Seconds the fault lasts (a kill: until the restart; a pause, a partition: until undone).
    hold: float
    # Seconds of calm after the cluster is ready again.
    gap: float


def schedule(seed: int, seconds: float) -> list[Step]:
    """Faults, one after another, until their holds and gaps fill ``seconds``."""
    rng = random.Random(seed)
    steps: list[Step] = []
    total = 0.0
    while total < seconds:
        step = Step(
            rng.choice(FAULTS), rng.choice(ORIGINS), rng.uniform(0.2, 2.0), rng.uniform(0.5, 2.5)
        )
        steps.append(step)
        total += step.hold + step.gap + 2.0  # about what a restart takes
    return steps


@dataclass
class Chaos:
    cluster: LocalCluster
    proxies: dict[str, FaultProxy]  # between the edges and each origin


@pytest.fixture
async def chaos(tmp_path: Path) -> AsyncIterator[Chaos]:
    spec = free_spec(data_dir=str(tmp_path / "data" / "{shard}"), durability="disk")
    proxies = {
        f"o{i}": await FaultProxy("127.0.0.1", spec.origin_port(i), seed=SEED + i).start()
        for i in range(spec.origins)
    }
    ports = tuple(proxies[f"o{i}"].port for i in range(spec.origins))
    spec = dataclasses.replace(spec, edge_origin_ports=ports)
    cluster = LocalCluster(spec, tmp_path, TOKEN_SECRET, API_KEY, log_dir=tmp_path / "logs")
    try:
        await asyncio.to_thread(cluster.start)
        yield Chaos(cluster, proxies)
    finally:
        await asyncio.to_thread(cluster.stop)
        for proxy in proxies.values():
            await proxy.close()


async def all_ready(session: aiohttp.ClientSession, cluster: LocalCluster) -> None:
    async def ready(i: int) -> bool:
        try:
            async with session.get(f"{cluster.origin_url(i)}/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    deadline = asyncio.get_running_loop().time() + RECOVERY
    while not all([await ready(i) for i in range(cluster.spec.origins)]):
        assert asyncio.get_running_loop().time() < deadline, "shards not ready after a fault"
        await asyncio.sleep(0.1)


async def inflict(step: Step, chaos: Chaos) -> None:
    cluster = chaos.cluster
    if step.kind == "kill":
        cluster.signal(step.target, signal.SIGKILL)
        await asyncio.to_thread(cluster.processes[step.target].wait, 10)
        await asyncio.sleep(step.hold)
        await asyncio.to_thread(cluster.restart, step.target)
    elif step.kind == "pause":
        cluster.signal(step.target, signal.SIGSTOP)
        await asyncio.sleep(step.hold)
        cluster.signal(step.target, signal.SIGCONT)
    elif step.kind == "partition":
        proxy = chaos.proxies[step.target]
        proxy.stall()
        proxy.cut()
        await asyncio.sleep(step.hold)
        proxy.resume()
    elif step.kind == "tier_crash":
        for name in ORIGINS:
            cluster.signal(name, signal.SIGKILL)
        for name in ORIGINS:
            await asyncio.to_thread(cluster.processes[name].wait, 10)
        await asyncio.sleep(step.hold)
        for name in ORIGINS:
            await asyncio.to_thread(cluster.restart, name)
    else:  # sigterm: hand over and restart
        cluster.signal(step.target, signal.SIGTERM)
        await asyncio.to_thread(cluster.processes[step.target].wait, 30)
        await asyncio.to_thread(cluster.restart, step.target)


async def test_nothing_acked_is_lost_duplicated_or_reordered_under_random_faults(
    chaos: Chaos, session: aiohttp.ClientSession
) -> None:
    steps = schedule(SEED, SECONDS)
    print(
        f"\nchaos seed {SEED} ({SECONDS:.0f} s): "
        + ", ".join(f"{s.kind} {s.target} {s.hold:.1f}s" for s in steps)
    )
    cluster = chaos.cluster
    channels = [f"fo:chaos{i}" for i in range(6)]
    recorders = await subscribed_recorders(session, cluster, channels)
    acks = Acks()
    epochs: dict[str, set[str]] = {ch: set() for ch in channels}
    stop = asyncio.Event()
    give_up = asyncio.get_running_loop().time() + SECONDS + 240

    tasks = publish_steadily(
        session,
        cluster,
        channels,
        acks,
        epochs,
        stop=stop,
        give_up=give_up,
        pause=0.05,
        context=f"seed {SEED}: ",
    )
    started = time.monotonic()
    try:
        for step in steps:
            await inflict(step, chaos)
            await all_ready(session, cluster)
            await asyncio.sleep(step.gap)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"chaos: {len(steps)} faults in {time.monotonic() - started:.0f} s, "
        f"{sum(len(a) for a in acks.acked.values())} acked, "
        f"{acks.temporary_errors} temporary errors retried"
    )

    assert not acks.other_errors, f"seed {SEED}: {acks.other_errors}"
    assert all(len(seen) == 1 for seen in epochs.values()), f"seed {SEED}: new epochs {epochs}"
    for ch in channels:
        kept = await history(session, f"{cluster.edge_url(0)}/api", ch)
        by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
        lost = {o: d for o, d in acks.acked.get(ch, {}).items() if by_offset.get(o) != d}
        assert lost == {}, f"seed {SEED}: {ch}: acked but not in history: {lost}"
    await until(lambda: all(r.has_all(acks) for r in recorders), 60, f"seed {SEED}: deliveries")
    for recorder in recorders:
        check_deliveries(recorder, acks)
        assert recorder.unsubscribed == [], f"seed {SEED}: {recorder.unsubscribed}"
        await recorder.close()
