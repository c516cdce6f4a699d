"""The Skyrelay client against real failures: its edge killed, every edge down while the app
keeps publishing (and restarts), and 200 clients coming back after an edge restart.

One cluster (1 origin, 2 edges) for the module; each test leaves every process running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from skyrelay.client import (
    Client,
    ClientEvent,
    ClientSettings,
    Connected,
    Connecting,
    Disconnected,
    Publication,
    Subscription,
)
from skyrelay.client.store import Store
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, until

pytestmark = pytest.mark.timeout(180)

# Short delays so the tests move quickly; the spread under test scales with backoff_min.
FAST = ClientSettings(backoff_min=0.2, backoff_max=1.0, backoff_reset_after=1.0)


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("client"), origins=1, edges=2, replication=1)
    yield c
    c.stop()


async def api(session: aiohttp.ClientSession, base: str, method: str, **params: Any) -> Any:
    async with session.post(
        f"{base}/api/{method}", json=params, headers={"X-API-Key": API_KEY}
    ) as resp:
        body = await resp.json()
    assert "result" in body, body
    return body["result"]


async def stop_edge(cl: LocalCluster, name: str, sig: signal.Signals) -> None:
    cl.signal(name, sig)
    await asyncio.to_thread(cl.processes[name].wait, 30)


async def restart_edge(cl: LocalCluster, name: str) -> None:
    """Start a stopped edge again and wait until it is ready, without blocking the loop.
    (Started from this thread: children die with the thread that started them.)"""
    if cl.processes[name].poll() is None:
        return
    cl.start_process(name, ["edge", "--id", name])
    url = cl.edge_url(int(name[1:])) + "/ready"

    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(url) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    deadline = asyncio.get_running_loop().time() + 30
    while not await ready():
        assert cl.processes[name].poll() is None, f"{name} exited"
        assert asyncio.get_running_loop().time() < deadline, f"{name} not ready"
        await asyncio.sleep(0.05)


def collect(sub: Subscription, into: list[Any]) -> asyncio.Task[None]:
    async def run() -> None:
        async for event in sub:
            into.append(event)

    return asyncio.ensure_future(run())


async def test_killed_edge_the_client_moves_and_recovers_without_gap(
    cl: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    events: list[ClientEvent] = []
    edges = [cl.edge_url(0), cl.edge_url(1)]
    async with Client(edges, token=token("mover"), settings=FAST, on_event=events.append) as c:
        sub = await c.subscribe(ch)
        got: list[Any] = []
        reader = collect(sub, got)
        await until(lambda: sub.subscribed, what="subscribed")
        first = c.edge
        victim, other = (0, 1) if first == edges[0] else (1, 0)
        for n in range(20):
            await api(session, edges[other], "publish", channel=ch, data={"n": n})
        await until(lambda: len(got) == 20, what="first 20")
        try:
            await stop_edge(cl, f"e{victim}", signal.SIGKILL)
            for n in range(20, 60):
                await api(session, edges[other], "publish", channel=ch, data={"n": n})
            await until(lambda: len(got) == 60, timeout=30, what="all 60 after the kill")
        finally:
            await restart_edge(cl, f"e{victim}")
        assert c.edge == edges[other]
        reader.cancel()
    assert all(isinstance(e, Publication) for e in got)
    assert [(e.offset, e.data) for e in got] == [(n + 1, {"n": n}) for n in range(60)]
    assert sub.recovered_count >= 1  # the same subscription, recovered on the other edge
    moved = [e for e in events if isinstance(e, Connected)]
    assert [e.edge for e in moved][:2] == [first, edges[other]]


async def test_draining_edge_sends_the_client_to_the_other_one(
    cl: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    events: list[ClientEvent] = []
    edges = [cl.edge_url(0), cl.edge_url(1)]
    async with Client(edges, token=token("drain"), settings=FAST, on_event=events.append) as c:
        sub = await c.subscribe(ch)
        got: list[Any] = []
        reader = collect(sub, got)
        await until(lambda: sub.subscribed, what="subscribed")
        first = c.edge
        victim, other = (0, 1) if first == edges[0] else (1, 0)
        try:
            await stop_edge(cl, f"e{victim}", signal.SIGTERM)
            await api(session, edges[other], "publish", channel=ch, data={"n": 0})
            await until(lambda: len(got) == 1, timeout=30, what="delivery after the drain")
        finally:
            await restart_edge(cl, f"e{victim}")
        reader.cancel()
    drained = [e for e in events if isinstance(e, Disconnected)]
    assert drained[0].code == 3001 and drained[0].reconnect
    after = [e for e in events if isinstance(e, Connecting)][1:]
    assert after[0].edge == edges[other]  # not back to the draining edge first


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyrelay", *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SKYRELAY_TOKEN": token("offline")},
    )
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    return proc


async def test_publications_made_offline_survive_a_restart_and_arrive_once_in_order(
    cl: LocalCluster, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ch = channel()
    state = str(tmp_path / "app.db")
    edges = ["--edge", cl.edge_url(0), "--edge", cl.edge_url(1)]
    for name in ("e0", "e1"):
        await stop_edge(cl, name, signal.SIGTERM)
    try:
        lines = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(20))
        first = run_cli("pub", *edges, "--state", state, ch, stdin=lines)
        assert first.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(first.stderr.readline), 30)
        assert line.strip() == b"queued 20", line
        assert first.poll() is None  # still trying to reach an edge
        first.kill()  # the app dies with everything unsent
        await asyncio.to_thread(first.wait)
        second = run_cli("pub", *edges, "--state", state, "--timeout", "90")
        for name in ("e0", "e1"):
            await restart_edge(cl, name)
        code = await asyncio.to_thread(second.wait, 120)
        assert second.stderr is not None
        assert code == 0, second.stderr.read()
    finally:
        for name in ("e0", "e1"):
            await restart_edge(cl, name)
    history = await api(session, cl.edge_url(0), "history", channel=ch, limit=-1)
    assert [p["data"] for p in history["publications"]] == [{"n": n} for n in range(20)]
    assert [p["offset"] for p in history["publications"]] == list(range(1, 21))


async def test_a_publication_sent_before_a_crash_is_not_published_again(
    cl: LocalCluster, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The crash window: acked by the relay, still in the outbox. Sent again, the same
    idempotency key makes it a no-op."""
    ch = channel()
    state = tmp_path / "app.db"
    async with Client([cl.edge_url(0)], token=token("crash"), state=state) as c:
        key = await c.publish(ch, {"n": 1})
        await asyncio.wait_for(c.flush(), 30)
    store = Store(state)
    store.enqueue(ch, orjson.dumps({"n": 1}), key, 0.0)
    store.close()
    async with Client([cl.edge_url(1)], token=token("crash"), state=state) as c:
        assert await c.queued() == 1
        await asyncio.wait_for(c.flush(), 30)
        assert await c.queued() == 0
    history = await api(session, cl.edge_url(0), "history", channel=ch, limit=-1)
    assert [p["data"] for p in history["publications"]] == [{"n": 1}]


STORM_CLIENTS = 200
STORM = ClientSettings(backoff_min=1.0, backoff_max=2.0, backoff_reset_after=1.0)


async def test_reconnect_storm_is_spread_and_every_client_recovers(
    cl: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    disconnected_at: dict[int, float] = {}
    first_attempt: dict[int, float] = {}

    def recorder(i: int) -> Any:
        def record(event: ClientEvent) -> None:
            if isinstance(event, Disconnected) and i not in disconnected_at:
                disconnected_at[i] = asyncio.get_running_loop().time()
            elif isinstance(event, Connecting) and i in disconnected_at:
                first_attempt.setdefault(i, event.at)

        return record

    edge = cl.edge_url(0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        clients = [
            Client(
                [edge], token=token(f"storm{i}"), settings=STORM, http=http, on_event=recorder(i)
            )
            for i in range(STORM_CLIENTS)
        ]
        got: list[list[Any]] = [[] for _ in clients]
        readers = []
        try:
            for c, into in zip(clients, got, strict=True):
                await c.start()
                readers.append(collect(await c.subscribe(ch), into))
            await until(lambda: all(c.connected for c in clients), timeout=60, what="connects")
            await api(session, cl.edge_url(1), "publish", channel=ch, data={"n": 0})
            await until(lambda: all(len(g) == 1 for g in got), timeout=30, what="first pub")
            await stop_edge(cl, "e0", signal.SIGTERM)
            for n in range(1, 6):
                await api(session, cl.edge_url(1), "publish", channel=ch, data={"n": n})
            await restart_edge(cl, "e0")
            await until(lambda: all(len(g) == 6 for g in got), timeout=60, what="recovery")
        finally:
            await restart_edge(cl, "e0")
            for r in readers:
                r.cancel()
            await asyncio.gather(*(c.close() for c in clients))
    for into in got:
        assert [(e.offset, e.data) for e in into] == [(n + 1, {"n": n}) for n in range(6)]
    assert len(first_attempt) == STORM_CLIENTS
    times = sorted(first_attempt.values())
    q1, _, q3 = statistics.quantiles(times, n=4)
    # Full jitter draws each first delay from [0, backoff_min]: a uniform spread has an
    # interquartile range of half that window. All at once would have next to none.
    assert q3 - q1 >= 0.25 * STORM.backoff_min, (q1, q3)
    # And no 5% slice of the window holds more than a fifth of the clients.
    slice_width = 0.05 * STORM.backoff_min
    crowd = max(sum(1 for t in times if s <= t < s + slice_width) for s in times)
    assert crowd <= STORM_CLIENTS // 5, crowd
