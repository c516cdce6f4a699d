"""Publish-to-deliver latency through a local cluster.

Starts a real cluster (3 origins, 2 edges), subscribes a WebSocket client on edge 0, publishes
through the server API of edge 1 at a fixed rate, and reports p50/p99/max of the time from
sending the publish request to receiving the publication.

    python -m skyrelay.benchmarks.latency [--messages 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import aiohttp

from skyrelay.benchmarks.common import (
    API_KEY,
    local_cluster,
    percentile,
    publications,
    subscribed_socket,
)
from skyrelay.testing.cluster import LocalCluster

# Deadline for the whole run, whatever the message count.
RUN_TIMEOUT = 300.0


async def measure(cluster: LocalCluster, messages: int, rate: float) -> list[float]:
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        ws = await subscribed_socket(session, cluster.ws_url(0), ["latency"])

        async def receive() -> None:
            async for pub in publications(ws):
                latencies.append(time.perf_counter() - sent_at[pub["data"]["n"]])
                if len(latencies) == messages:
                    done.set()
                    return

        reader = asyncio.create_task(receive())
        url = f"{cluster.edge_url(1)}/api/publish"
        headers = {"X-API-Key": API_KEY}
        interval = 1.0 / rate
        start = time.perf_counter()
        for n in range(messages):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[n] = time.perf_counter()
            async with session.post(
                url, json={"channel": "latency", "data": {"n": n}}, headers=headers
            ) as r:
                await r.read()
        await asyncio.wait_for(done.wait(), 30)
        reader.cancel()
        await ws.close()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="publications per second")
    parser.add_argument("--port", type=int, default=None, help="default: a free range")
    args = parser.parse_args()
    with local_cluster(args.port) as cluster:
        lat = asyncio.run(asyncio.wait_for(measure(cluster, args.messages, args.rate), RUN_TIMEOUT))
    ms = [v * 1000 for v in lat]
    path = "publish (API, edge 1) -> deliver (WebSocket, edge 0)"
    print(f"{path}, {len(ms)} messages at {args.rate:.0f}/s")
    print(
        f"p50 {percentile(ms, 0.50):.2f} ms   p99 {percentile(ms, 0.99):.2f} ms   "
        f"max {max(ms):.2f} ms   mean {statistics.fmean(ms):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
