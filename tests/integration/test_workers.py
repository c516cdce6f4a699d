"""An edge with two worker processes on one port: connections spread over both, emulation
requests reach the worker that owns the session, /metrics covers both, and the supervisor
restarts, reloads and stops its workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from skyrelay.testing.cluster import (
    START_TIMEOUT,
    ClusterSpec,
    ClusterTls,
    LocalCluster,
    render_config,
)
from tests.integration.conftest import API_KEY, free_spec, start_cluster, token
from tests.support.helpers import channel, until
from tests.support.jsclient import JsClient
from tests.support.tlsfiles import make_ca, make_server_cert
from tests.support.wsclient import RawClient, connect_raw

pytestmark = pytest.mark.timeout(120)

WORKERS = 2
# Sessions opened at most while looking for an emulation request the kernel hands to the
# worker that does not own the session (each does with probability 1/2).
MAX_SESSIONS = 60


@pytest.fixture(scope="module")
def multicore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("workers"),
        origins=1,
        edges=1,
        replication=1,
        edge_workers=WORKERS,
    )
    yield c
    c.stop()


@pytest.fixture
async def fresh() -> AsyncIterator[aiohttp.ClientSession]:
    """A new TCP connection for every request, so that each can land on either worker."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


async def scrape(session: aiohttp.ClientSession, url: str) -> list[Sample]:
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def per_worker(samples: list[Sample], name: str, **labels: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            found[s.labels["worker"]] = found.get(s.labels["worker"], 0.0) + s.value
    return found


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {w: v - before.get(w, 0.0) for w, v in after.items() if v - before.get(w, 0.0)}


async def publish(session: aiohttp.ClientSession, url: str, ch: str, data: Any) -> None:
    async with session.post(
        f"{url}/api/publish", json={"channel": ch, "data": data}, headers={"X-API-Key": API_KEY}
    ) as resp:
        assert "result" in await resp.json()


async def test_connections_spread_over_both_workers_and_each_gets_every_publication(
    multicore: LocalCluster, fresh: aiohttp.ClientSession
) -> None:
    edge = multicore.edge_url(0)
    ch = channel()
    before = await scrape(fresh, edge)
    clients: list[RawClient] = []
    for i in range(40):
        client, reply = await connect_raw(fresh, multicore.ws_url(0), token(f"w{i}"))
        assert "connect" in reply
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
        clients.append(client)
    for n in range(1, 6):
        await publish(fresh, edge, ch, {"n": n})
    for client in clients:
        pushes = await client.wait_pushes(5)
        assert [p["pub"]["data"]["n"] for p in pushes] == [1, 2, 3, 4, 5]
        assert [p["pub"]["offset"] for p in pushes] == [1, 2, 3, 4, 5]
    # Nothing twice: a last publication arrives right behind the others.
    await publish(fresh, edge, ch, {"n": 6})
    for client in clients:
        pushes = await client.wait_pushes(6)
        assert [p["pub"]["offset"] for p in pushes] == [1, 2, 3, 4, 5, 6]

    after = await scrape(fresh, edge)
    # Counters, not gauges: clients of other tests may still be closing.
    deliveries = delta(
        per_worker(after, "skyrelay_edge_deliveries_total"),
        per_worker(before, "skyrelay_edge_deliveries_total"),
    )
    assert set(deliveries) == {"0", "1"}, f"one worker got every connection: {deliveries}"
    assert sum(deliveries.values()) == 40 * 6
    assert all(count % 6 == 0 for count in deliveries.values())
    assert sum(per_worker(after, "skyrelay_edge_connections").values()) >= 40
    # One upstream subscription per channel per worker: each worker is its own link peer.
    upstream = delta(
        per_worker(after, "skyrelay_edge_upstream_subscribes_total"),
        per_worker(before, "skyrelay_edge_upstream_subscribes_total"),
    )
    assert upstream == {"0": 1, "1": 1}
    async with fresh.get(f"{multicore.origin_url(0)}/metrics") as resp:
        assert "skyrelay_origin_edge_links 2.0" in await resp.text()
    # The status page covers the whole edge, whichever worker serves it.
    for _ in range(4):
        async with fresh.get(f"{edge}/status/data", headers={"X-API-Key": API_KEY}) as resp:
            status = await resp.json()
        assert status["workers"] == WORKERS
        assert status["connections"] >= 40 and status["by_transport"]["websocket"] >= 40
        routed = {s["id"]: s["routed_channels"] for s in status["shards"]}
        assert routed["o0"] >= WORKERS  # the channel, held once by each worker
    for client in clients:
        await client.ws.close()


class StreamSession:
    """One http_stream emulation session, read line by line."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.replies: dict[int, dict[str, Any]] = {}
        self.pushes: list[dict[str, Any]] = []
        self.session = ""
        self.node = ""

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, edge: str, user: str) -> StreamSession:
        connect = {"id": 1, "connect": {"token": token(user)}}
        resp = await http.post(f"{edge}/connection/http_stream", data=json.dumps(connect))
        assert resp.status == 200
        stream = cls(resp)
        reply = (await stream.reply(1))["connect"]
        stream.session, stream.node = reply["session"], reply["node"]
        return stream

    async def _read_one(self) -> None:
        line = await self.resp.content.readline()
        if not line:
            raise ConnectionError("stream ended")
        message = json.loads(line)
        if "id" in message:
            self.replies[message["id"]] = message
        elif "push" in message:
            self.pushes.append(message["push"])

    async def reply(self, cmd_id: int, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while cmd_id not in self.replies:
                await self._read_one()
        return self.replies.pop(cmd_id)

    async def wait_pushes(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.pushes) < count:
                await self._read_one()
        return self.pushes

    async def post(self, http: aiohttp.ClientSession, edge: str, commands: list[Any]) -> int:
        body = {
            "session": self.session,
            "node": self.node,
            "data": "\n".join(json.dumps(c) for c in commands),
        }
        async with http.post(f"{edge}/emulation", data=json.dumps(body)) as resp:
            return resp.status


async def test_emulation_requests_reach_the_worker_that_owns_the_session(
    multicore: LocalCluster, fresh: aiohttp.ClientSession
) -> None:
    edge = multicore.edge_url(0)
    ch = channel()
    forwarded = "skyrelay_edge_worker_forwards_total"
    before = await scrape(fresh, edge)
    streams: list[StreamSession] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as long_lived:
        try:
            while len(streams) < MAX_SESSIONS:
                stream = await StreamSession.open(long_lived, edge, f"em{len(streams)}")
                streams.append(stream)
                # A new TCP connection per POST: the kernel picks the worker each time.
                subscribe = [{"id": 2, "subscribe": {"channel": ch}}]
                assert await stream.post(fresh, edge, subscribe) == 204
                assert "subscribe" in await stream.reply(2), "a subscribe failed"
                assert await stream.post(fresh, edge, [{}]) == 204  # a pong
                got = delta(
                    per_worker(await scrape(fresh, edge), forwarded, outcome="ok"),
                    per_worker(before, forwarded, outcome="ok"),
                )
                if {s.node for s in streams} == {"e0.0", "e0.1"} and got:
                    break
            owners = {s.node for s in streams}
            assert owners == {"e0.0", "e0.1"}, f"every session on {owners}"
            assert got, "no POST /emulation went to the worker that does not own the session"

            for n in range(1, 4):
                await publish(fresh, edge, ch, {"n": n})
            for stream in streams:
                pushes = await stream.wait_pushes(3)
                assert [p["pub"]["offset"] for p in pushes] == [1, 2, 3]

            after = await scrape(fresh, edge)
            failed = per_worker(after, forwarded, outcome="unreachable")
            assert not delta(failed, per_worker(before, forwarded, outcome="unreachable"))
            # Each session's publications are counted once, on the worker that owns it.
            deliveries = delta(
                per_worker(after, "skyrelay_edge_deliveries_total"),
                per_worker(before, "skyrelay_edge_deliveries_total"),
            )
            owned = {
                node[-1]: 3 * sum(1 for s in streams if s.node == node) for node in ("e0.0", "e0.1")
            }
            assert deliveries == owned
        finally:
            for stream in streams:
                stream.resp.close()


async def test_emulation_for_an_unknown_node_is_404(
    multicore: LocalCluster, fresh: aiohttp.ClientSession
) -> None:
    edge = multicore.edge_url(0)
    for node in ("e0", "e0.2", "e0.01", "e1.0", "other"):
        body = {"session": "s", "node": node, "data": "{}"}
        async with fresh.post(f"{edge}/emulation", data=json.dumps(body)) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["message"] == f"unknown node {node!r}"


@pytest.mark.parametrize("transport", ["http_stream", "sse"])
async def test_centrifuge_js_emulation_on_two_workers(
    multicore: LocalCluster, fresh: aiohttp.ClientSession, transport: str
) -> None:
    edge = multicore.edge_url(0)
    channels = [channel() for _ in range(4)]
    js = await JsClient.start(
        [{"transport": transport, "endpoint": f"{edge}/connection/{transport}"}],
        token("jsworker"),
        f"{edge}/emulation",
    )
    try:
        await js.call("connect")
        (connected,) = await js.wait(lambda e: e["ev"] == "connected")
        assert connected["transport"] == transport
        for ch in channels:
            await js.call("subscribe", channel=ch)
        await js.wait(lambda e: e["ev"] == "subscribed", count=len(channels))
        for ch in channels:
            await publish(fresh, edge, ch, {"ch": ch})
        await js.wait(lambda e: e["ev"] == "pub", count=len(channels))
        assert all(js.pubs(ch) == [(1, {"ch": ch})] for ch in channels)
    finally:
        await js.close()


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def worker_pids(session: aiohttp.ClientSession, edge: str) -> dict[int, int]:
    """Worker index -> pid, from /health (each request may reach either worker)."""
    found: dict[int, int] = {}

    async def poll() -> bool:
        async with session.get(f"{edge}/health") as resp:
            body = await resp.json()
        found[body["worker"]] = body["pid"]
        return len(found) == WORKERS

    deadline = time.monotonic() + 10
    while not await poll():
        assert time.monotonic() < deadline, f"only workers {found} answered"
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
async def test_supervisor_restarts_reloads_and_stops_its_workers(
    tmp_path: Path, fresh: aiohttp.ClientSession
) -> None:
    cluster = start_cluster(tmp_path, origins=1, edges=1, replication=1, edge_workers=WORKERS)
    try:
        edge = cluster.edge_url(0)
        supervisor = cluster.processes["e0"]
        pids = await worker_pids(fresh, edge)
        assert set(pids.values()) == children(supervisor.pid)

        # A worker killed outright is started again, and serves.
        os.kill(pids[0], signal.SIGKILL)
        await until(lambda: gone(pids[0]), what="the killed worker to go")
        await until(lambda: len(children(supervisor.pid) - {pids[0]}) == WORKERS, timeout=15)
        cluster.wait_edge_ready(0, time.monotonic() + START_TIMEOUT)
        now = await worker_pids(fresh, edge)
        assert now[0] != pids[0] and now[1] == pids[1]
        client, _ = await connect_raw(fresh, cluster.ws_url(0), token())
        assert "subscribe" in await client.command("subscribe", {"channel": channel()})
        await client.ws.close()
        log = (tmp_path / "logs" / "e0.log").read_text()
        assert f"worker 0 (pid {pids[0]}) exited" in log
        assert f"worker 0 started (pid {now[0]})" in log

        # SIGHUP reaches every worker: both link to a shard added to the config.
        cluster.add_shard()

        async def both_linked() -> bool:
            up = per_worker(await scrape(fresh, edge), "skyrelay_edge_shard_up", shard="o1")
            return up == {"0": 1.0, "1": 1.0}

        deadline = time.monotonic() + 15
        while not await both_linked():
            assert time.monotonic() < deadline, "a worker did not reload the config"

        # SIGTERM to the supervisor stops every worker.
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0
        assert all(gone(pid) for pid in now.values())

        # Killed outright, the supervisor takes its workers with it.
        cluster.restart("e0")
        supervisor = cluster.processes["e0"]
        orphans = await worker_pids(fresh, edge)
        supervisor.kill()
        supervisor.wait(5)
        await until(lambda: all(gone(pid) for pid in orphans.values()), timeout=15)
    finally:
        cluster.stop()


SKYRELAY = [sys.executable, "-m", "skyrelay"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_edge_with_workers_prints_one_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    spec = free_spec(origins=1, edges=1, replication=1)
    config = tmp_path / "edge.toml"
    config.write_text(render_config(spec))
    env = {**os.environ, "SKYRELAY_TOKEN_SECRET": "s" * 40}
    proc = subprocess.Popen(
        [*SKYRELAY, "edge", "--config", str(config), "--workers", "3"],
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("ready "):
                break
        assert lines[-1].strip() == f"ready http://127.0.0.1:{spec.edge_port(0)}", lines
        workers = children(proc.pid)
        assert len(workers) == 3
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(15) == 0
        assert all(gone(pid) for pid in workers)
        assert [line for line in lines + rest.splitlines() if line.startswith("ready")] == [
            lines[-1]
        ]
        assert "Traceback" not in "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--worker", "0"], "--worker is set by the edge supervisor only"),
        (["--workers", "2", "--worker", "2", "--mesh", "/nonexistent"], "--worker is set"),
    ],
)
def test_bad_worker_arguments_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(render_config(ClusterSpec(origins=1, edges=1, replication=1)))
    done = subprocess.run(
        [*SKYRELAY, "edge", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_failing_at_start_up_stops_the_edge(tmp_path: Path) -> None:
    spec = free_spec(origins=1, edges=1, replication=1)
    config = tmp_path / "edge.toml"
    config.write_text(render_config(spec))
    env = {**os.environ, "SKYRELAY_TOKEN_SECRET": "s" * 40}
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker can bind
        taken.bind(("127.0.0.1", spec.edge_port(0)))
        taken.listen()
        done = subprocess.run(
            [*SKYRELAY, "edge", "--config", str(config), "--workers", "2"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "during start-up; stopping" in done.stderr


async def test_workers_over_tls(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, "host")
    pki = ClusterTls(str(ca.path), str(files.cert), str(files.key))
    cluster = start_cluster(
        tmp_path / "cluster", origins=1, edges=1, replication=1, edge_workers=WORKERS, tls=pki
    )
    context = ssl.create_default_context(cafile=pki.ca)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, force_close=True)
        ) as trusting:
            edge = cluster.edge_url(0)
            assert edge.startswith("https://")
            ch = channel()
            clients = []
            for i in range(10):
                client, _ = await connect_raw(trusting, cluster.ws_url(0), token(f"t{i}"))
                assert "subscribe" in await client.command("subscribe", {"channel": ch})
                clients.append(client)
            await publish(trusting, edge, ch, {"n": 1})
            for client in clients:
                assert [p["pub"]["offset"] for p in await client.wait_pushes(1)] == [1]
                await client.ws.close()
            samples = await scrape(trusting, edge)
            assert per_worker(samples, "skyrelay_edge_worker_up") == {"0": 1.0, "1": 1.0}
        log = (tmp_path / "cluster" / "logs" / "e0.log").read_text()
        assert f"ready https://127.0.0.1:{cluster.spec.edge_port(0)}" in log
    finally:
        cluster.stop()
