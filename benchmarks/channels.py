"""Channels: many channels with a few subscribers each (chat rooms, per-user feeds), spread
over the shards of the ring. Deliveries per second at saturation (publications to every channel
through the server API's ``batch``), and publish-to-receive latency at a fixed rate below it.

    skyrelay bench channels [--quick] [--channels 10000] [--per-channel 2] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
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

# Receiver processes, and channels each of their connections follows.
RECEIVER_PROCESSES = 2
CHANNELS_PER_CONNECTION = 20
# Publications per server API batch, and batches in flight.
BATCH = 500
IN_FLIGHT = 4
# Latency samples kept per receiver process, and seconds any phase may take.
LATENCY_SAMPLE = 20_000
PHASE_TIMEOUT = 300.0
# Bytes a receiver's result line may take (it carries the latency sample).
RESULT_LINE_LIMIT = 16 << 20


@dataclass
class ChannelFigures:
    channels: int
    subscriptions: int
    connections: int
    publications: int
    deliveries: int
    publish_per_s: float
    deliveries_per_s: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    receiver_cpu: float
    # The latency distribution at ``rate``: percentile (0-100) -> ms.
    percentiles: dict[str, float]


# Percentiles of the latency distribution kept in the results and plotted.
PLOTTED_PERCENTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def channel_names(count: int) -> list[str]:
    return [f"bench:room{i}" for i in range(count)]


def assignment(channels: int, per_channel: int) -> list[list[str]]:
    """Each connection's channels: every channel gets ``per_channel`` subscribers on
    different connections."""
    names = channel_names(channels)
    subscriptions = [name for _ in range(per_channel) for name in names]
    return [
        subscriptions[i : i + CHANNELS_PER_CONNECTION]
        for i in range(0, len(subscriptions), CHANNELS_PER_CONNECTION)
    ]


# The receiver side: a separate process holding a share of the connections.


async def _hold(
    session: aiohttp.ClientSession,
    url: str,
    channels: list[str],
    state: dict[str, Any],
    subscribed: asyncio.Event,
) -> None:
    ws = await session.ws_connect(url, compress=0, max_msg_size=0)
    commands = [{"id": 1, "connect": {"token": bench_token()}}]
    commands += [{"id": 2 + i, "subscribe": {"channel": c}} for i, c in enumerate(channels)]
    await ws.send_str("\n".join(json.dumps(c) for c in commands))
    replies = 0
    async for msg in ws:
        now = time.time()
        for line in msg.data.split("\n"):
            if line.startswith('{"push"'):
                state["received"] += 1
                state["last"] = now
                if len(state["latencies"]) < LATENCY_SAMPLE and '"t":' in line:
                    sent = json.loads(line)["push"]["pub"]["data"]["t"]
                    state["latencies"].append(now - sent)
                if state["received"] >= state["expect"]:
                    state["done"].set()
            elif line == "{}":
                await ws.send_str("{}")
            else:
                replies += 1
                if replies == len(commands):
                    state["ready"] += 1
                    if state["ready"] == state["connections"]:
                        subscribed.set()


async def _receive(url: str) -> None:
    # The channels come on stdin: too many for a command line.
    loop = asyncio.get_running_loop()
    groups: list[list[str]] = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        state: dict[str, Any] = {
            "received": 0,
            "last": 0.0,
            "latencies": [],
            "ready": 0,
            "connections": len(groups),
            "expect": 0,
            "done": asyncio.Event(),
        }
        subscribed = asyncio.Event()
        tasks = [asyncio.create_task(_hold(session, url, g, state, subscribed)) for g in groups]
        await asyncio.wait_for(subscribed.wait(), PHASE_TIMEOUT)
        print("ready", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            state.update(received=0, last=0.0, latencies=[], expect=int(line), done=asyncio.Event())
            with contextlib.suppress(TimeoutError):  # report what came, even if short
                await asyncio.wait_for(state["done"].wait(), PHASE_TIMEOUT)
            cpu = time.process_time()
            out = {k: state[k] for k in ("received", "last", "latencies")}
            print(json.dumps({**out, "cpu": cpu}), flush=True)
        for task in tasks:
            task.cancel()


# The driver.


class Receivers:
    def __init__(self, procs: list[asyncio.subprocess.Process], subscriptions: list[int]) -> None:
        self.procs = procs
        self.subscriptions = subscriptions

    @classmethod
    async def start(cls, url: str, groups: list[list[str]]) -> Receivers:
        procs, counts = [], []
        for share in range(RECEIVER_PROCESSES):
            mine = groups[share::RECEIVER_PROCESSES]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "skyrelay.benchmarks.channels",
                "receive",
                url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=RESULT_LINE_LIMIT,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(mine).encode() + b"\n")
            procs.append(proc)
            counts.append(sum(len(g) for g in mine))
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), PHASE_TIMEOUT)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"receivers did not get ready: {line!r}")
        return cls(procs, counts)

    async def expect(self, per_channel_publications: int) -> None:
        for proc, subs in zip(self.procs, self.subscriptions, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(f"{subs * per_channel_publications}\n".encode())
            await proc.stdin.drain()

    async def results(self) -> list[dict[str, Any]]:
        found = []
        for proc in self.procs:
            assert proc.stdout is not None
            found.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), 600)))
        return found

    async def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()


async def publish_batches(
    session: aiohttp.ClientSession, api: str, publications: list[tuple[str, Any]]
) -> None:
    batches = [publications[i : i + BATCH] for i in range(0, len(publications), BATCH)]
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(batch: list[tuple[str, Any]]) -> None:
        body = {"commands": [{"publish": {"channel": c, "data": d}} for c, d in batch]}
        async with gate, session.post(f"{api}/batch", json=body, headers={"X-API-Key": API_KEY}):
            pass

    await asyncio.gather(*(one(b) for b in batches))


async def measure(
    edge_url: str,
    ws_url: str,
    channels: int,
    per_channel: int,
    rounds: int,
    rate: float,
    paced_s: float,
) -> ChannelFigures:
    groups = assignment(channels, per_channel)
    names = channel_names(channels)
    receivers = await Receivers.start(ws_url, groups)
    api = f"{edge_url}/api"
    async with aiohttp.ClientSession() as session:
        # Saturation: ``rounds`` publications to every channel, as fast as the API takes them.
        await receivers.expect(rounds)
        started = time.time()
        await publish_batches(session, api, [(c, {"r": r}) for r in range(rounds) for c in names])
        published = time.time() - started
        saturated = await receivers.results()
        # Latency at a fixed rate: publications to random channels, each round robin so every
        # channel gets the same count and the receivers know what to expect.
        paced = max(1, round(rate * paced_s / channels))
        order = [c for _ in range(paced) for c in random.sample(names, len(names))]
        await receivers.expect(paced)
        interval = 1 / rate
        next_at = time.monotonic()
        for name in order:
            await publish_batches(session, api, [(name, {"t": time.time()})])
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        timed = await receivers.results()
    await receivers.stop()
    deliveries = sum(r["received"] for r in saturated)
    elapsed = max(r["last"] for r in saturated) - started
    latencies = [v * 1000 for r in timed for v in r["latencies"]]
    return ChannelFigures(
        channels=channels,
        subscriptions=channels * per_channel,
        connections=len(groups),
        publications=rounds * channels,
        deliveries=deliveries,
        publish_per_s=rounds * channels / published if published > 0 else 0.0,
        deliveries_per_s=deliveries / elapsed if elapsed > 0 else 0.0,
        rate=rate,
        p50_ms=percentile(latencies, 0.5) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99) if latencies else 0.0,
        max_ms=max(latencies) if latencies else 0.0,
        receiver_cpu=max(r["cpu"] for r in timed),
        percentiles={
            f"{q * 100:g}": percentile(latencies, q) for q in PLOTTED_PERCENTILES if latencies
        },
    )


def report(figures: ChannelFigures, *, quick: bool) -> None:
    f = figures
    print(
        f"\nchannels: {f.channels:,} channels x {f.subscriptions // f.channels} subscribers "
        f"on {f.connections:,} connections"
    )
    print(f"  saturation: {f.publications:,} publications, {f.deliveries:,} deliveries")
    print(f"  publish {f.publish_per_s:,.0f}/s   deliveries {f.deliveries_per_s:,.0f}/s")
    print(
        f"  latency at {f.rate:.0f} publications/s: p50 {f.p50_ms:.1f} ms  "
        f"p99 {f.p99_ms:.1f} ms  max {f.max_ms:.1f} ms"
    )
    save_results("channels", asdict(f), quick=quick)
    if not quick:
        plot(f, RESULTS / "channels.png")


def plot(f: ChannelFigures, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.bar(["publications/s", "deliveries/s"], [f.publish_per_s, f.deliveries_per_s])
    a.set_title(f"saturation, {f.channels:,} channels")
    qs = [float(q) / 100 for q in f.percentiles]
    b.plot(qs, list(f.percentiles.values()), marker="o")
    b.set_xscale("logit")
    b.set_xticks(qs, list(f.percentiles))
    b.minorticks_off()
    b.set_xlabel("percentile")
    b.set_ylabel("ms")
    b.set_title(f"publish-to-receive at {f.rate:.0f} publications/s")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def run(argv: list[str]) -> int:
    if argv and argv[0] == "receive":
        asyncio.run(_receive(argv[1]))
        return 0
    parser = argparse.ArgumentParser(
        prog="skyrelay bench channels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--per-channel", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=5, help="saturation: publications per channel"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="latency: publications/s")
    parser.add_argument("--origins", type=int, default=3)
    args = parser.parse_args(argv)
    channels, rounds, rate, paced_s = args.channels, args.rounds, args.rate, 20.0
    if args.quick:
        channels, rounds, rate, paced_s = 200, 2, 200.0, 1.0
    with local_cluster(origins=args.origins, edges=1, replication=1) as cluster:
        figures = asyncio.run(
            measure(
                cluster.edge_url(0),
                cluster.ws_url(0),
                channels,
                args.per_channel,
                rounds,
                rate,
                paced_s,
            )
        )
    report(figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
