"""Fan-out: one channel, many subscribers. Deliveries per second at saturation (a burst of
publications), then publish-to-receive latency at half of each target's own saturation and at
one fixed rate for all, for Skyrelay and for the peers, in the same run.

    skyrelay bench fanout [--quick] [--subscribers 1000] [--peers socketio,pushpin] [--workers 2]
                          [--protocols json,protobuf]

Skyrelay is measured once per wire format (JSON, and protobuf as the native SDKs speak it).
With ``--workers N`` Skyrelay's edge runs N worker processes on its port; results then go to
``fanout-workersN.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from skyrelay.benchmarks.common import (
    API_KEY,
    RESULTS,
    bench_token,
    local_cluster,
    percentile,
    pyplot,
    save_results,
)
from skyrelay.benchmarks.peers import pushpin
from skyrelay.benchmarks.profiler import print_top, profiled

DEFAULT_SUBSCRIBERS = 1000
# The fixed rate of the second latency phase, publications/s (the p99 target is
# given at 1,000 subscribers and this rate).
FIXED_RATE = 100.0
# Each latency phase publishes for about this many seconds, within these counts.
PACED_SECONDS = 5.0
PACED_MIN, PACED_MAX = 50, 2500
# Receiver processes: the load generators must never be the bottleneck.
RECEIVER_PROCESSES = 2
# Pushpin answers 502 to bursts of new connections: its receivers pause 100 ms after each
# this many connects (so at most RECEIVER_PROCESSES * 10 * PUSHPIN_RAMP connects a second).
PUSHPIN_RAMP = 50
# Share of one core a receiver process may use during the burst before the run warns that
# the load generators, not the server, may have set the pace.
RECEIVER_BUSY_LIMIT = 0.9


@dataclass
class Figures:
    target: str
    subscribers: int
    publications: int
    deliveries: int
    deliveries_per_s: float
    # Latency at half this target's own saturation (publications/s).
    half_rate: float
    half_p50_ms: float
    half_p99_ms: float
    half_max_ms: float
    # Latency at the same fixed rate for every target.
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    # Largest share of one core a receiver process used while the burst arrived.
    receiver_busy: float


# Skyrelay's client variants: wire format, with or without permessage-deflate.
VARIANTS = ("json", "protobuf", "json+deflate", "protobuf+deflate")


def variants(listed: str) -> list[str]:
    """The variants of a comma-separated list; empty if any is unknown."""
    chosen = [v for v in listed.split(",") if v]
    return chosen if all(v in VARIANTS for v in chosen) else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Target:
    """A server under test: how to reach it and how to publish to it."""

    kind: str
    url: str
    token: str = ""
    # How the report names it (the kind, plus the worker count of a multi-core edge).
    label: str = ""
    # The server's process, the root of its process tree (0: unknown), for memory figures.
    pid: int = 0
    # Receivers ask for permessage-deflate.
    deflate: bool = False

    async def publish(self, session: aiohttp.ClientSession, messages: list[dict[str, Any]]) -> None:
        raise NotImplementedError


class SkyrelayTarget(Target):
    kind = "skyrelay"

    def __init__(
        self, edge_url: str, ws_url: str, workers: int = 1, pid: int = 0, variant: str = "json"
    ) -> None:
        """``variant``: the wire format, json or protobuf, and ``+deflate`` to compress."""
        self.api = f"{edge_url}/api/publish"
        self.pid = pid
        self.url = ws_url
        self.token = bench_token()
        self.label = f"skyrelay-{workers}w" if workers > 1 else "skyrelay"
        protocol, _, extension = variant.partition("+")
        if protocol != "json":
            self.kind = f"skyrelay-{protocol}"
            self.label += f"-{protocol}"
        if extension == "deflate":
            self.deflate = True
            self.label += "+deflate"

    async def publish(self, session: aiohttp.ClientSession, messages: list[dict[str, Any]]) -> None:
        async def one(message: dict[str, Any]) -> None:
            body = json.dumps({"channel": "bench", "data": message})
            async with session.post(self.api, data=body, headers={"X-API-Key": API_KEY}) as r:
                await r.read()

        for i in range(0, len(messages), 16):  # in order, 16 in flight
            await asyncio.gather(*(one(m) for m in messages[i : i + 16]))


class SocketIoTarget(Target):
    kind = "socketio"

    def __init__(self, port: int, pid: int = 0) -> None:
        self.url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        self.pid = pid
        self.api = f"http://127.0.0.1:{port}/publish"

    async def publish(self, session: aiohttp.ClientSession, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            async with session.post(self.api, json={"data": message}) as r:
                await r.read()


class PushpinTarget(Target):
    kind = "pushpin"

    def __init__(self, http_port: int, port_offset: int, pid: int = 0) -> None:
        self.url = f"http://127.0.0.1:{http_port}/bench"
        self.pid = pid
        self.api = pushpin.publish_url(port_offset)

    async def publish(self, session: aiohttp.ClientSession, messages: list[dict[str, Any]]) -> None:
        # One body per burst: Pushpin drops items when bodies overlap on a slow stream.
        data = json.dumps(messages[0])
        for body in pushpin.publish_bodies(data, len(messages)):
            async with session.post(self.api, data=body) as r:
                await r.read()


@contextmanager
def pushpin_server() -> Iterator[PushpinTarget]:
    if shutil.which(pushpin.PUSHPIN_BIN) is None:
        raise RuntimeError("pushpin is not installed (apt-get install pushpin)")
    origin_port, http_port = free_port(), free_port()
    origin = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skyrelay.benchmarks.peers.pushpin",
            "origin",
            "--port",
            str(origin_port),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="bench-pushpin-") as workdir:
        proc = pushpin.start_pushpin(Path(workdir), http_port, origin_port)
        try:
            pushpin.wait_pushpin_ready(proc, http_port)
            yield PushpinTarget(http_port, 0, proc.pid)  # the runner, parent of the rest
        finally:
            pushpin.stop_pushpin(proc)
            origin.terminate()
            origin.wait(10)


@contextmanager
def socketio_server() -> Iterator[SocketIoTarget]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyrelay.benchmarks.peers.socketio_server", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "ready" not in (proc.stderr.readline() or "ready"):
            pass
        yield SocketIoTarget(port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Receivers:
    procs: list[asyncio.subprocess.Process]
    # Largest share of one core a receiver process used while connecting.
    connect_busy: float


async def receivers(target: Target, subscribers: int, expect: int) -> Receivers:
    procs = []
    share = [subscribers // RECEIVER_PROCESSES] * RECEIVER_PROCESSES
    share[0] += subscribers - sum(share)
    for n in share:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "skyrelay.benchmarks.receivers",
            "--kind",
            target.kind,
            "--url",
            target.url,
            "--token",
            target.token,
            "--connections",
            str(n),
            "--expect",
            str(expect),
            "--ramp",
            str(PUSHPIN_RAMP if target.kind == "pushpin" else 0),
            *(["--deflate"] if target.deflate else []),
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
    busy = 0.0
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"receivers of {target.kind} did not get ready: {line!r}")
        elapsed, cpu = (float(v) for v in line.split()[1:3])
        busy = max(busy, cpu / elapsed if elapsed > 0 else 0.0)
    return Receivers(procs, busy)


async def results(procs: list[asyncio.subprocess.Process]) -> list[dict[str, Any]]:
    found = []
    for proc in procs:
        assert proc.stdout is not None
        out = await asyncio.wait_for(proc.stdout.read(), 300)
        await proc.wait()
        found.append(json.loads(out.decode().strip().splitlines()[-1]))
    return found


async def paced_latencies(
    session: aiohttp.ClientSession, target: Target, subscribers: int, rate: float, count: int
) -> list[float]:
    """Publish ``count`` messages on a fixed schedule; publish-to-receive times in ms."""
    procs = (await receivers(target, subscribers, count)).procs
    started = time.monotonic()
    for n in range(count):
        await target.publish(session, [{"n": n, "t": time.time()}])
        await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
    return [v * 1000 for r in await results(procs) for v in r["latencies"]]


def paced_count(rate: float, quick: bool) -> int:
    if quick:
        return 10
    return int(min(PACED_MAX, max(PACED_MIN, rate * PACED_SECONDS)))


def summary(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return 0.0, 0.0, 0.0
    return percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies)


async def measure(
    target: Target, subscribers: int, burst: int, rate: float, quick: bool = False
) -> Figures:
    """Saturation (a burst), then latency at half of it, then at the fixed ``rate``."""
    async with aiohttp.ClientSession() as session:
        procs = (await receivers(target, subscribers, burst)).procs
        started = time.time()
        await target.publish(session, [{"n": n, "t": time.time()} for n in range(burst)])
        got = await results(procs)
        delivered = sum(r["received"] for r in got)
        elapsed = max(r["last"] for r in got) - started
        busy = max(
            (r["cpu"] / (r["last"] - r["first"]) for r in got if r["last"] > r["first"]),
            default=0.0,
        )
        saturation = delivered / elapsed if elapsed > 0 else 0.0
        half_rate = max(1.0, saturation / subscribers / 2)
        half = await paced_latencies(
            session, target, subscribers, half_rate, paced_count(half_rate, quick)
        )
        fixed = await paced_latencies(session, target, subscribers, rate, paced_count(rate, quick))
    return Figures(
        target.label or target.kind,
        subscribers,
        burst,
        delivered,
        saturation,
        half_rate,
        *summary(half),
        rate,
        *summary(fixed),
        busy,
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="skyrelay bench fanout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument("--subscribers", type=int, default=DEFAULT_SUBSCRIBERS)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument(
        "--peers", default="socketio", help="comma-separated: socketio,pushpin, or none"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the edge")
    parser.add_argument(
        "--protocols", default="json,protobuf", help="Skyrelay's wire formats to measure"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample Skyrelay's edge with py-spy during the run"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=FIXED_RATE,
        help="the fixed-rate latency phase, publications/s, the same for every target",
    )
    args = parser.parse_args(argv)
    subscribers, burst, rate = args.subscribers, args.burst, args.rate
    if args.quick:
        subscribers, burst, rate = 100, 20, 20.0
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    figures: list[Figures] = []
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    name = "fanout" + ("" if subscribers == DEFAULT_SUBSCRIBERS else f"-{subscribers}")
    name += "" if args.workers == 1 else f"-workers{args.workers}"
    protocols = variants(args.protocols)
    if not protocols:
        parser.error(f"--protocols: some of {','.join(VARIANTS)}")
    with local_cluster(origins=1, edges=1, replication=1, edge_workers=args.workers) as cluster:
        for protocol in protocols:
            target = SkyrelayTarget(
                cluster.edge_url(0), cluster.ws_url(0), args.workers, variant=protocol
            )
            with contextlib.ExitStack() as stack:
                profile = None
                if args.profile:
                    edge_pid = cluster.processes["e0"].pid
                    path = RESULTS / f"{name}-{protocol}-edge.profile"
                    profile = stack.enter_context(profiled(edge_pid, path))
                figures.append(asyncio.run(measure(target, subscribers, burst, rate, args.quick)))
            if profile is not None:
                print_top(profile)
    if "socketio" in peers:
        with socketio_server() as peer:
            figures.append(asyncio.run(measure(peer, subscribers, burst, rate, args.quick)))
    if "pushpin" in peers:
        with pushpin_server() as pp:
            figures.append(asyncio.run(measure(pp, subscribers, burst, rate, args.quick)))
    report(figures, name, quick=args.quick)
    return 0


def report(figures: list[Figures], name: str, *, quick: bool) -> None:
    base = figures[0]
    print(f"\n{name}: {base.subscribers} subscribers, burst of {base.publications}")
    print(
        f"{'':<18} {'saturation':>13} | {'at half saturation':^27} | "
        f"{f'at {base.rate:.0f}/s':^29} |"
    )
    print(
        f"{'target':<18} {'deliveries/s':>13} | {'pub/s':>7} {'p50 ms':>9} {'p99 ms':>9} | "
        f"{'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} | {'receivers':>9}  vs Skyrelay"
    )
    for f in figures:
        ratio = base.deliveries_per_s / f.deliveries_per_s if f.deliveries_per_s else 0.0
        print(
            f"{f.target:<18} {f.deliveries_per_s:>13,.0f} | {f.half_rate:>7,.0f} "
            f"{f.half_p50_ms:>9.1f} {f.half_p99_ms:>9.1f} | {f.p50_ms:>9.1f} {f.p99_ms:>9.1f} "
            f"{f.max_ms:>9.1f} | {f.receiver_busy:>9.0%}  "
            f"{'' if f is base else f'Skyrelay x{ratio:.1f}'}"
        )
    for f in figures:
        if f.receiver_busy > RECEIVER_BUSY_LIMIT:
            print(
                f"warning: a load generator for {f.target} was busy {f.receiver_busy:.0%} of "
                "the burst; it may have set the pace"
            )
    save_results(name, [asdict(f) for f in figures], quick=quick)
    if not quick:
        plot(figures, RESULTS / f"{name}.png")


def plot(figures: list[Figures], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = [f.target for f in figures]
    a.bar(names, [f.deliveries_per_s for f in figures], color="#3b82f6")
    a.set_title("deliveries/s at saturation (higher is better)")
    x = range(len(figures))
    b.bar([i - 0.2 for i in x], [f.half_p99_ms for f in figures], 0.4, label="half saturation")
    b.bar([i + 0.2 for i in x], [f.p99_ms for f in figures], 0.4, label=f"{figures[0].rate:.0f}/s")
    b.set_xticks(list(x), names)
    b.set_yscale("log")
    b.set_title("p99 publish-to-receive, ms (lower is better)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
