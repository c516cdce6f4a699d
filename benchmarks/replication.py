"""Publish throughput through one primary, with and without replication.

All publications go to channels led by shard o0, through the server API of both edges, with a
fixed number in flight. Replication 3 (acked at 2 copies) is compared with replication 1.

    python -m skyrelay.benchmarks.replication [--publications 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from skyrelay.benchmarks.common import api_publish, channels_led_by, local_cluster, percentile

# Deadline for one run, whatever its size.
RUN_TIMEOUT = 300.0


async def run(
    edges: list[str], channels: list[str], total: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(min(50, total)):  # warm-up: leadership, connections
            await api_publish(session, edges[n % 2], channels[n % len(channels)], {"w": n})

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                started = time.perf_counter()
                answer = await api_publish(
                    session, edges[n % 2], channels[n % len(channels)], {"n": n}
                )
                if "result" not in answer:
                    raise RuntimeError(f"publish failed: {answer}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return total / elapsed, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publications", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--port", type=int, default=None, help="default: a free range")
    args = parser.parse_args()
    print(f"{args.publications} publications, {args.concurrency} in flight, 20 channels led by o0")
    for replication in (1, 3):
        channels = channels_led_by("o0", 3, replication, 20)
        with local_cluster(args.port, replication=replication) as cluster:
            edges = [cluster.edge_url(0), cluster.edge_url(1)]
            rate, lat = asyncio.run(
                asyncio.wait_for(
                    run(edges, channels, args.publications, args.concurrency), RUN_TIMEOUT
                )
            )
        ms = [v * 1000 for v in lat]
        label = "replication 1 (no copies)" if replication == 1 else "replication 3 (ack at 2)"
        print(
            f"  {label:<28} {rate:8.0f} publications/s   "
            f"latency p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
