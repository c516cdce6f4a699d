"""A multi-host rehearsal of the Kubernetes deployment, without Kubernetes: every origin and
edge in a network namespace of its own, with its own address, reaching the others by the
names pods would have (skyrelay-origin-N.skyrelay-origin, through each host's hosts file),
configured as the manifests configure them (a watched config file, durable shards, the link
secret). Under steady publishing through both edges: a StatefulSet-style scale-up from 3 to
4 shards and back (a config change, then the new pod; the config change back, then the pod
gone), then a rolling restart of the whole cluster, one process at a time, each waiting for
the previous one's /ready. Nothing acked is lost; epochs never change."""

from __future__ import annotations

import asyncio
import functools
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from skyrelay.ring import Member, Ring
from skyrelay.testing.cluster import ClusterSpec, LocalCluster
from tests.integration.conftest import API_KEY, TOKEN_SECRET
from tests.support.helpers import is_ready
from tests.support.load import Acks, history, publish
from tests.support.netns import Network, require_namespaces

pytestmark = pytest.mark.timeout(420)

ORIGINS = ("o0", "o1", "o2", "o3")
EDGES = ("e0", "e1")
ORIGIN_PORT = 8100
EDGE_PORT = 8000


def _channels() -> list[str]:
    """Three channels that the fourth shard leads once it joins, three that it does not."""
    grown = Ring([Member(o) for o in ORIGINS], 3)
    names = [f"fo:rehearsal-{i}" for i in range(200)]
    moving = [ch for ch in names if grown.owner(ch) == "o3"]
    staying = [ch for ch in names if grown.owner(ch) != "o3"]
    return moving[:3] + staying[:3]


CHANNELS = _channels()
# Seconds any one step may take (a process ready, a shard emptied).
SETTLE = 60.0


def pod_name(shard: str) -> str:
    return f"skyrelay-origin-{shard[1:]}.skyrelay-origin"


def render(shards: tuple[str, ...], data: Path) -> str:
    lines = [
        "replication = 3",
        "config_watch_interval = 0.5",
        "",
        "[origin]",
        f'data_dir = "{data}/{{shard}}"',
        'durability = "disk"',
        "handover_timeout = 10",
        "",
        "[health]",
        "interval = 0.2",
        "timeout = 0.5",
        "fall = 3",
        "rise = 2",
        "",
        "[namespaces.fo]",
        "history_size = 5000",
        "history_ttl = 900",
        "",
    ]
    for shard in shards:
        lines += [
            "[[shards]]",
            f'id = "{shard}"',
            f'url = "http://{pod_name(shard)}:{ORIGIN_PORT}"',
            'listen_host = "0.0.0.0"',
            "",
        ]
    for edge in EDGES:
        lines += ["[[edges]]", f'id = "{edge}"', 'host = "0.0.0.0"', f"port = {EDGE_PORT}", ""]
    return "\n".join(lines)


@dataclass
class Rehearsal:
    net: Network
    cluster: LocalCluster
    data: Path
    forwards: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.forwards[name]}"

    def configure(self, shards: tuple[str, ...]) -> None:
        self.cluster.config_path.write_text(render(shards, self.data))

    def start(self, name: str) -> None:
        args = ["origin", "--id", name] if name.startswith("o") else ["edge", "--id", name]
        self.cluster.start_process(name, args)

    async def ready(self, session: aiohttp.ClientSession, name: str) -> None:
        process = self.cluster.processes[name]
        check = functools.partial(is_ready, session, process, name, self.url(name))
        await eventually(check, SETTLE, f"{name} ready")

    async def stop(self, name: str) -> None:
        self.cluster.signal(name, signal.SIGTERM)
        await asyncio.to_thread(self.cluster.processes[name].wait, SETTLE)

    async def leads(self, session: aiohttp.ClientSession, name: str) -> int:
        async with session.get(f"{self.url(name)}/status") as resp:
            status = await resp.json()
        return sum(1 for c in status["channels"].values() if c["role"] == "leader")


async def eventually(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def rehearsal(tmp_path: Path) -> AsyncIterator[Rehearsal]:
    require_namespaces()
    net = Network(subnet="10.214.0")
    cluster: LocalCluster | None = None
    try:
        prefix = net.cluster_hosts(ORIGINS, EDGES)
        net.name_hosts({pod_name(o): o for o in ORIGINS} | {f"skyrelay-edge-{e}": e for e in EDGES})
        cluster = LocalCluster(
            ClusterSpec(), tmp_path, TOKEN_SECRET, API_KEY, log_dir=tmp_path / "logs", prefix=prefix
        )
        found = Rehearsal(net, cluster, tmp_path / "data")
        found.configure(ORIGINS[:3])
        for name in ORIGINS:
            found.forwards[name] = (await net.forward(name, ORIGIN_PORT)).port
        for name in EDGES:
            found.forwards[name] = (await net.forward(name, EDGE_PORT)).port
        for name in (*ORIGINS[:3], *EDGES):
            found.start(name)
        async with aiohttp.ClientSession() as session:
            for name in (*ORIGINS[:3], *EDGES):
                await found.ready(session, name)
        yield found
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        await net.close()


async def test_scale_up_and_down_then_a_rolling_restart_lose_nothing(
    rehearsal: Rehearsal,
) -> None:
    r = rehearsal
    acks = Acks()
    epochs: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:

        async def publisher(ch: str, edge: str) -> None:
            give_up = asyncio.get_running_loop().time() + 300
            for n in itertools.count():
                if stop.is_set():
                    return
                data = {"n": n}
                result = await publish(
                    session, f"{r.url(edge)}/api", ch, data, f"{ch}-{n}", acks, give_up
                )
                assert result is not None, acks.other_errors
                epochs[ch].add(result["epoch"])
                await asyncio.sleep(0.02)

        def acked() -> int:
            return sum(len(a) for a in acks.acked.values())

        async def more_traffic(what: str) -> None:
            before = acked()
            await eventually(lambda: acked() >= before + 60, SETTLE, f"traffic after {what}")

        tasks = [
            asyncio.ensure_future(publisher(ch, EDGES[i % 2])) for i, ch in enumerate(CHANNELS)
        ]
        try:
            await more_traffic("the start")
            started = time.monotonic()
            # Scale up: the config first (every process takes it from the watched file), then
            # the new pod.
            r.configure(ORIGINS)
            r.start("o3")
            await r.ready(session, "o3")
            for name in ORIGINS[:3]:
                await r.ready(session, name)
            await eventually(lambda: r.leads(session, "o3"), SETTLE, "o3 leading channels")
            r.timings["scale_up_s"] = time.monotonic() - started
            await more_traffic("the scale-up")
            # Scale down: the config back, then the pod once it leads nothing.
            started = time.monotonic()
            r.configure(ORIGINS[:3])
            await eventually(
                lambda: _leads_none(r, session, "o3"), SETTLE, "o3 handing its channels back"
            )
            await r.stop("o3")
            r.timings["scale_down_s"] = time.monotonic() - started
            await more_traffic("the scale-down")
            # A rolling restart of everything, the StatefulSet's way then the Deployment's.
            started = time.monotonic()
            for name in (*ORIGINS[:3], *EDGES):
                await r.stop(name)
                r.start(name)
                await r.ready(session, name)
            r.timings["rolling_restart_s"] = time.monotonic() - started
            await more_traffic("the rolling restart")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            assert task.exception() is None, task.exception()
        assert acks.other_errors == []
        assert all(len(e) == 1 for e in epochs.values()), epochs
        for ch in CHANNELS:
            kept = await history(session, f"{r.url('e0')}/api", ch)
            by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
            for offset, data in acks.acked[ch].items():
                assert by_offset.get(offset) == data, f"{ch}@{offset} lost"
        total = acked()
    print(
        f"\nrehearsal: {total} publications acked, none lost, "
        f"{acks.temporary_errors} temporary errors retried; "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items())
    )


async def _leads_none(r: Rehearsal, session: aiohttp.ClientSession, name: str) -> bool:
    return await r.leads(session, name) == 0
