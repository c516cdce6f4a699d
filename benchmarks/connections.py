"""Connections: how fast an edge accepts WebSocket clients (connect + subscribe), and how much
memory each idle one costs (RSS growth of the edge process divided by connections).

    skyrelay bench connections [--quick] [--connections 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass

import aiohttp

from benchmarks.common import API_KEY, RESULTS, local_cluster, rss_kib
from benchmarks.fanout import SkyrelayTarget, receivers, results

# Receiver processes holding the connections.
HOLDERS = 4


@dataclass
class ConnectionFigures:
    target: str
    connections: int
    connect_per_s: float
    rss_before_kib: int
    rss_after_kib: int
    kib_per_connection: float


async def measure(edge_url: str, ws_url: str, pid: int, count: int) -> ConnectionFigures:
    target = SkyrelayTarget(edge_url, ws_url)
    before = rss_kib(pid)
    started = time.monotonic()
    procs = await receivers(target, count, 1)
    connected = time.monotonic() - started
    await asyncio.sleep(1.0)  # let allocations settle before reading the RSS
    after = rss_kib(pid)
    async with aiohttp.ClientSession() as session:  # release the holders
        body = json.dumps({"channel": "bench", "data": {"t": time.time()}})
        async with session.post(
            f"{edge_url}/api/publish", data=body, headers={"X-API-Key": API_KEY}
        ) as resp:
            await resp.read()
    await results(procs)
    return ConnectionFigures(
        "skyrelay", count, count / connected, before, after, (after - before) / count
    )


def run(argv: list[str]) -> int:
    doc = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="skyrelay bench connections", description=doc)
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args(argv)
    count = 300 if args.quick else args.connections
    with local_cluster(origins=1, edges=1, replication=1) as cluster:
        pid = cluster.processes["e0"].pid
        figures = asyncio.run(measure(cluster.edge_url(0), cluster.ws_url(0), pid, count))
    print(f"\nconnections: {figures.connections} idle WebSocket clients on one edge process")
    print(
        f"  connect + subscribe rate   {figures.connect_per_s:10,.0f} /s (including client start)"
    )
    print(
        f"  edge RSS                   {figures.rss_before_kib / 1024:7.1f} MiB -> "
        f"{figures.rss_after_kib / 1024:.1f} MiB"
    )
    print(f"  memory per connection      {figures.kib_per_connection:10.1f} KiB")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("connections-quick.json" if args.quick else "connections.json")
    out.write_text(json.dumps(asdict(figures), indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
