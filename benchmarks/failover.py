"""Failover time: from the failure of a channel's leader to the first delivery of a publication
sent after it, at a subscriber on another edge. Repeated; the median is reported.

Two failures: SIGKILL (the link drops, noticed at once) and SIGSTOP (a hung process, noticed by
health checks: interval 0.2 s, timeout 0.3 s, fall 2).

    python -m skyrelay.benchmarks.failover [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from skyrelay.benchmarks.common import (
    RESULTS,
    api_publish,
    channels_led_by,
    local_cluster,
    publications,
    pyplot,
    save_results,
    subscribed_socket,
)

# Publications per second on each measured channel, before and after the failure.
RATE = 200
# Seconds of traffic before the failure.
WARM = 1.0
# Deadline for the first delivery after the failure.
DEADLINE = 20.0


async def one_run(port: int | None, sig: signal.Signals) -> tuple[float, int]:
    """(failover seconds, publications acked then lost)."""
    channels = channels_led_by("o0", 3, 3, 4)
    with local_cluster(port) as cluster:
        async with aiohttp.ClientSession() as session:
            ws = await subscribed_socket(session, cluster.ws_url(1), channels)
            failed_at = 0.0
            first_after: float | None = None
            sent_at: dict[int, float] = {}
            received: set[int] = set()
            arrived = asyncio.Event()
            acked: set[int] = set()

            async def read() -> None:
                nonlocal first_after
                async for pub in publications(ws):
                    n = pub["data"]["n"]
                    received.add(n)
                    arrived.set()
                    if failed_at and first_after is None and sent_at[n] > failed_at:
                        first_after = time.monotonic() - failed_at

            async def publish(n: int) -> None:
                key = f"k{n}"
                while True:
                    sent_at.setdefault(n, time.monotonic())
                    answer = await api_publish(
                        session, cluster.edge_url(0), channels[n % len(channels)], {"n": n}, key
                    )
                    if "result" in answer:
                        acked.add(n)
                        return
                    await asyncio.sleep(0.02)

            reader = asyncio.ensure_future(read())
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks = []
            n = 0
            while first_after is None and loop.time() - start < WARM + DEADLINE:
                if not failed_at and loop.time() - start >= WARM:
                    cluster.signal("o0", sig)
                    failed_at = time.monotonic()
                tasks.append(asyncio.ensure_future(publish(n)))
                n += 1
                await asyncio.sleep(1 / RATE)
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
            deadline = loop.time() + DEADLINE
            while not acked <= received and loop.time() < deadline:
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), max(0.0, deadline - loop.time()))
            reader.cancel()
            if sig is signal.SIGSTOP:
                cluster.signal("o0", signal.SIGCONT)
            await ws.close()
    if first_after is None:
        raise RuntimeError("no delivery after the failure")
    return first_after, len(acked - received)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=None, help="default: a free range")
    args = parser.parse_args()
    found: dict[str, Any] = {"rate": RATE, "runs": args.runs}
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        times, lost = [], 0
        for _ in range(args.runs):
            seconds, lost_now = asyncio.run(one_run(args.port, sig))
            times.append(seconds * 1000)
            lost += lost_now
        found[sig.name] = {"ms": times, "median_ms": statistics.median(times), "lost": lost}
        print(
            f"{sig.name:<8} leader of 4 channels, {RATE} publications/s: failover median "
            f"{statistics.median(times):.0f} ms (runs: {', '.join(f'{t:.0f}' for t in times)}); "
            f"acked then lost: {lost}"
        )
    save_results("failover", found)
    plot(found, RESULTS / "failover.png")
    return 0


def plot(found: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, name in enumerate(("SIGKILL", "SIGSTOP")):
        times = found[name]["ms"]
        ax.scatter([i] * len(times), times, color="#3b82f6", zorder=2)
        ax.hlines(found[name]["median_ms"], i - 0.25, i + 0.25, color="#f97316", zorder=3)
        ax.annotate(f"lost {found[name]['lost']}", (i + 0.28, found[name]["median_ms"]))
    ax.set_xticks([0, 1], ["leader killed (SIGKILL)", "leader hung (SIGSTOP)"])
    ax.set_yscale("log")
    ax.set_ylabel("ms to the first delivery")
    ax.set_title(f"failover under {found['rate']} publications/s (runs, median in orange)")
    ax.set_xlim(-0.5, 1.8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
