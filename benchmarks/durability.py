"""What durability costs: acked publications/s and publish latency at each level (replication
3, acked at 2), disk bytes per publication, and how long a shard holding many channels takes to
restart.

Publishers send server API batches (``parallel``) of publications to channels led by o0,
through both edges, a fixed number of batches in flight.

    python -m skyrelay.benchmarks.durability [--seconds 8] [--batch 100] [--in-flight 8]
        [--restart-channels 10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from skyrelay.benchmarks.common import (
    API_KEY,
    RESULTS,
    channels_led_by,
    local_cluster,
    percentile,
    pyplot,
    save_results,
)

LEVELS = ("memory", "disk", "fsync")
# Channels the publishers spread over (all led by o0).
CHANNELS = 20


@dataclass
class LevelFigures:
    level: str
    acked_per_s: float
    p50_ms: float
    p99_ms: float
    disk_bytes_per_publication: float


async def publish_for(
    edges: list[str], channels: list[str], seconds: float, batch: int, in_flight: int
) -> tuple[int, list[float]]:
    """Publish batches until ``seconds`` have passed; (acked, per-batch latencies)."""
    acked = 0
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(edge: str, commands: list[dict[str, Any]]) -> int:
            body = json.dumps({"commands": commands, "parallel": True})
            async with session.post(
                f"{edge}/api/batch", data=body, headers={"X-API-Key": API_KEY}
            ) as resp:
                replies = (await resp.json())["replies"]
            return sum(1 for r in replies if "publish" in r)

        await send(edges[0], [{"publish": {"channel": c, "data": 0}} for c in channels])
        end = loop.time() + seconds
        counter = 0

        async def worker(index: int) -> None:
            nonlocal acked, counter
            while loop.time() < end:
                commands = []
                for _ in range(batch):
                    counter += 1
                    ch = channels[counter % len(channels)]
                    commands.append({"publish": {"channel": ch, "data": {"n": counter}}})
                started = time.perf_counter()
                got = await send(edges[index % len(edges)], commands)
                # Not `acked += await ...`: that reads `acked` before the await.
                acked += got
                latencies.append(time.perf_counter() - started)

        started = loop.time()
        await asyncio.gather(*(worker(i) for i in range(in_flight)))
        elapsed = loop.time() - started
    return int(acked / elapsed), latencies


def median_run(runs: list[LevelFigures]) -> LevelFigures:
    """The run with the median rate (its latencies and bytes with it)."""
    return sorted(runs, key=lambda f: f.acked_per_s)[len(runs) // 2]


def data_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.log"))


def measure_level(level: str, args: argparse.Namespace, workdir: Path, round_: int) -> LevelFigures:
    channels = channels_led_by("o0", 3, 3, CHANNELS)
    data = workdir / f"{level}-{round_}"
    spec: dict[str, Any] = {"durability": level}
    if level != "memory":
        spec["data_dir"] = str(data / "{shard}")
    with local_cluster(None, **spec) as cluster:
        edges = [cluster.edge_url(0), cluster.edge_url(1)]
        before = data_bytes(data) if data.exists() else 0
        rate, latencies = asyncio.run(
            publish_for(edges, channels, args.seconds, args.batch, args.in_flight)
        )
        written = (data_bytes(data) if data.exists() else 0) - before
    ms = sorted(v * 1000 for v in latencies)
    per_pub = written / 3 / max(1, rate * args.seconds)  # three copies of each publication
    return LevelFigures(level, rate, percentile(ms, 0.5), percentile(ms, 0.99), per_pub)


def measure_restart(channels: int, workdir: Path) -> dict[str, float]:
    """Fill ``channels`` channels with a full history (100 each), then SIGKILL a shard and
    time its start until /ready."""
    names = [f"bench:r{i}" for i in range(channels)]
    data = workdir / "restart"
    with local_cluster(None, data_dir=str(data / "{shard}")) as cluster:
        edges = [cluster.edge_url(0), cluster.edge_url(1)]
        asyncio.run(fill(edges, names, 100))
        size = data_bytes(data / "o0")
        cluster.signal("o0", signal.SIGKILL)
        cluster.processes["o0"].wait(10)
        started = time.perf_counter()
        cluster.restart("o0")
        took = time.perf_counter() - started
    return {"channels": channels, "seconds_to_ready": took, "bytes_on_disk": size}


def measure_disk_use(minutes: float, workdir: Path) -> dict[str, Any]:
    """Steady publishing at level disk with small segments: the data directories' size over
    time, against what the copies hold (history_size 100 per channel)."""
    data = workdir / "disk-use"
    segment = 4 << 20
    with local_cluster(
        None, data_dir=str(data / "{shard}"), origin_toml=f"storage_segment_bytes = {segment}"
    ) as cluster:
        edges = [cluster.edge_url(0), cluster.edge_url(1)]
        samples = asyncio.run(steady(edges, data, minutes * 60))
    return {
        "minutes": minutes,
        "segment_bytes": segment,
        "channels": DISK_CHANNELS,
        "rate": DISK_RATE,
        "samples": samples,
    }


# Channels and publications per second of the disk-use run.
DISK_CHANNELS = 200
DISK_RATE = 2000


async def steady(edges: list[str], data: Path, seconds: float) -> list[tuple[float, float]]:
    """Publish DISK_RATE/s over DISK_CHANNELS for ``seconds``; (elapsed s, MiB on disk) samples."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    samples: list[tuple[float, float]] = []
    sent = 0
    async with aiohttp.ClientSession() as session:
        while (elapsed := loop.time() - start) < seconds:
            commands = [
                {
                    "publish": {
                        "channel": f"kept:c{(sent + i) % DISK_CHANNELS}",
                        "data": {"n": sent + i, "pad": "x" * 100},
                    }
                }
                for i in range(DISK_RATE // 10)
            ]
            sent += len(commands)
            body = json.dumps({"commands": commands, "parallel": True})
            async with session.post(
                f"{edges[sent % 2]}/api/batch", data=body, headers={"X-API-Key": API_KEY}
            ) as resp:
                await resp.read()
            if not samples or elapsed - samples[-1][0] >= 5:
                samples.append((round(elapsed, 1), data_bytes(data) / 2**20))
            await asyncio.sleep(max(0.0, start + sent / DISK_RATE - loop.time()))
    return samples


async def fill(edges: list[str], names: list[str], per_channel: int) -> None:
    async with aiohttp.ClientSession() as session:
        for round_ in range(per_channel):
            for start in range(0, len(names), 500):
                commands = [
                    {"publish": {"channel": n, "data": {"r": round_, "pad": "x" * 40}}}
                    for n in names[start : start + 500]
                ]
                body = json.dumps({"commands": commands, "parallel": True})
                edge = edges[(start // 500) % 2]
                async with session.post(
                    f"{edge}/api/batch", data=body, headers={"X-API-Key": API_KEY}
                ) as resp:
                    await resp.read()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--restart-channels", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="runs per level; the median counts")
    parser.add_argument("--disk-minutes", type=float, default=10, help="0: skip the disk-use run")
    parser.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.restart_channels, args.rounds, args.disk_minutes = 1.0, 200, 1, 0.1
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"skyrelay-bench-durability-{os.getpid()}"
    runs: dict[str, list[LevelFigures]] = {level: [] for level in LEVELS}
    try:
        for round_ in range(args.rounds):  # levels interleaved, so drift hits all alike
            for level in LEVELS:
                runs[level].append(measure_level(level, args, workdir, round_))
        figures = [median_run(runs[level]) for level in LEVELS]
        restart = measure_restart(args.restart_channels, workdir)
        disk_use = measure_disk_use(args.disk_minutes, workdir) if args.disk_minutes else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"durability: replication 3 (ack at 2), batches of {args.batch}, {args.in_flight} in flight"
    )
    print(f"{'level':<8} {'acked/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'disk B/pub':>11}")
    memory_rate = figures[0].acked_per_s
    for f in figures:
        share = f" ({f.acked_per_s / memory_rate:.0%} of memory)" if f.level != "memory" else ""
        rates = ", ".join(f"{r.acked_per_s:,.0f}" for r in runs[f.level])
        print(
            f"{f.level:<8} {f.acked_per_s:>10,.0f} {f.p50_ms:>8.1f} {f.p99_ms:>8.1f} "
            f"{f.disk_bytes_per_publication:>11.0f}{share}   runs: {rates}"
        )
    print(
        f"restart: a shard holding {restart['channels']:,} channels x 100 publications "
        f"({restart['bytes_on_disk'] / 2**20:.0f} MiB) ready in {restart['seconds_to_ready']:.1f} s"
    )
    if disk_use is not None:
        sizes = [mib for _, mib in disk_use["samples"]]
        print(
            f"disk use: {DISK_RATE}/s over {DISK_CHANNELS} channels for "
            f"{disk_use['minutes']:g} min, 3 shards, 4 MiB segments: "
            f"max {max(sizes):.0f} MiB, last {sizes[-1]:.0f} MiB"
        )
    name = "durability"
    save_results(
        name,
        {
            "levels": [asdict(f) for f in figures],
            "runs": {level: [asdict(r) for r in rs] for level, rs in runs.items()},
            "restart": restart,
            "disk_use": disk_use,
        },
        quick=args.quick,
    )
    if not args.quick:
        plot(figures, RESULTS / f"{name}.png")
    return 0


def plot(figures: list[LevelFigures], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [f.level for f in figures]
    a.bar(names, [f.acked_per_s for f in figures], color="#3b82f6")
    a.set_title("acked publications/s, replication 3")
    b.bar(names, [f.p50_ms for f in figures], color="#10b981", label="p50")
    b.bar(
        names,
        [f.p99_ms - f.p50_ms for f in figures],
        bottom=[f.p50_ms for f in figures],
        color="#f59e0b",
        label="p99",
    )
    b.set_title("batch latency, ms")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    import sys

    raise SystemExit(run(sys.argv[1:]))
