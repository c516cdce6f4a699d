"""Connections: how fast a server accepts WebSocket clients (connect + subscribe), and how much
memory each idle one costs (RSS growth / connections), for Skyrelay and for the peers, in the
same run.

    skyrelay bench connections [--quick] [--connections 10000] [--peers socketio,pushpin]
        [--workers 2] [--protocols json,protobuf,json+deflate]

Every connection subscribes to one channel and then idles; at the end one publication releases
them all (each receiver waits for one message), which also checks that every connection was
still served.

What is measured, per target:
- connect/s: connections / the time until every receiver process printed ``ready`` (all its
  connections subscribed), including the start of the receiver processes;
- memory: the growth of the server's resident memory (summed VmRSS of its process tree) between
  before the first connect and once all are connected, divided by the connections.

Skyrelay is measured once per client variant: JSON, protobuf, and JSON with permessage-deflate
(the receivers then send their commands compressed, as browsers do, so the edge holds the
decompressor a real client costs). Skyrelay's memory is its edge, which holds the client
connections: the edge process, or with ``--workers N`` the edge's process tree; the origin
shard is not counted. python-socketio is its
one server process. Pushpin is its runner's whole process tree (condure, zurl, pushpin-proxy,
pushpin-handler); its GRIP origin, the application behind it, is not counted. Pushpin's clients
connect gradually (it answers 502 to bursts), so its rate is at most the pacing allows.

With ``--workers N`` results go to ``connections-workersN.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from skyrelay.benchmarks.common import (
    RESULTS,
    local_cluster,
    process_tree,
    pyplot,
    save_results,
    tree_rss_kib,
)
from skyrelay.benchmarks.fanout import (
    PUSHPIN_RAMP,
    RECEIVER_BUSY_LIMIT,
    RECEIVER_PROCESSES,
    VARIANTS,
    SkyrelayTarget,
    Target,
    pushpin_server,
    receivers,
    results,
    socketio_server,
    variants,
)
from skyrelay.benchmarks.receivers import RETRY_PAUSE as RAMP_PAUSE

DEFAULT_CONNECTIONS = 10_000
QUICK_CONNECTIONS = 300
# Seconds to let allocations settle after the last connect, before reading the RSS.
SETTLE = 1.0


@dataclass
class ConnectionFigures:
    target: str
    connections: int
    connect_per_s: float
    rss_before_kib: int
    rss_after_kib: int
    kib_per_connection: float
    # Processes whose RSS was summed (the server's process tree once all were connected).
    processes: int
    # Connections that received the releasing publication (all of them, unless some dropped).
    released: int
    # Largest share of one core a load generator used while connecting: near 100%, the
    # connect rate is the load generators', not the server's.
    receiver_busy: float


async def measure(target: Target, count: int) -> ConnectionFigures:
    if not target.pid:
        raise ValueError(f"no server process to measure for {target.kind}")
    before = tree_rss_kib(target.pid)
    started = time.monotonic()
    rx = await receivers(target, count, 1)
    procs = rx.procs
    connected = time.monotonic() - started
    await asyncio.sleep(SETTLE)
    after = tree_rss_kib(target.pid)
    processes = len(process_tree(target.pid))
    async with aiohttp.ClientSession() as session:  # release the receivers
        await target.publish(session, [{"n": 0, "t": time.time()}])
    got = await results(procs)
    return ConnectionFigures(
        target.label or target.kind,
        count,
        count / connected,
        before,
        after,
        (after - before) / count,
        processes,
        sum(r["complete"] for r in got),
        rx.connect_busy,
    )


def run(argv: list[str]) -> int:
    doc = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="skyrelay bench connections", description=doc)
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument(
        "--peers", default="socketio", help="comma-separated: socketio,pushpin, or none"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the edge")
    parser.add_argument(
        "--protocols",
        default="json,protobuf,json+deflate",
        help=f"Skyrelay's client variants, some of {','.join(VARIANTS)}",
    )
    args = parser.parse_args(argv)
    protocols = variants(args.protocols)
    if not protocols:
        parser.error(f"--protocols: some of {','.join(VARIANTS)}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    unknown = set(peers) - {"socketio", "pushpin"}
    if unknown:
        parser.error(f"unknown peers: {','.join(sorted(unknown))}")
    count = QUICK_CONNECTIONS if args.quick else args.connections
    if count < 1:
        parser.error("--connections must be at least 1")
    figures: list[ConnectionFigures] = []
    for variant in protocols:
        # A fresh edge per variant: each one's memory is measured from the same start.
        with local_cluster(origins=1, edges=1, replication=1, edge_workers=args.workers) as cluster:
            pid = cluster.processes["e0"].pid
            target = SkyrelayTarget(
                cluster.edge_url(0), cluster.ws_url(0), args.workers, pid, variant
            )
            figures.append(asyncio.run(measure(target, count)))
    if "socketio" in peers:
        with socketio_server() as peer:
            figures.append(asyncio.run(measure(peer, count)))
    if "pushpin" in peers:
        with pushpin_server() as pp:
            figures.append(asyncio.run(measure(pp, count)))
    name = "connections" + ("" if args.workers == 1 else f"-workers{args.workers}")
    report(figures, name, args.workers, quick=args.quick)
    return 0


def _times(value: float) -> str:
    return f"x{value:.1f}" if value > 0 else "-"


def report(figures: list[ConnectionFigures], name: str, workers: int, *, quick: bool) -> None:
    base = figures[0]
    edge = "the edge process" if workers == 1 else f"the edge's process tree ({workers} workers)"
    print(f"\n{name}: {base.connections} idle connections per target, one channel each")
    print(f"  memory per connection = RSS growth / connections; Skyrelay: {edge}")
    print(
        f"{'target':<22} {'connections':>11} {'connect/s':>10} {'RSS MiB before -> after':>24}",
        end="",
    )
    print(f" {'KiB/conn':>9} {'procs':>5} {'receivers':>9}  {'rate vs':>7} {'memory vs':>9}")
    for f in figures:
        rate = base.connect_per_s / f.connect_per_s if f.connect_per_s > 0 else 0.0
        memory = (
            f.kib_per_connection / base.kib_per_connection if base.kib_per_connection > 0 else 0.0
        )
        rss = f"{f.rss_before_kib / 1024:8.1f} -> {f.rss_after_kib / 1024:8.1f}"
        print(
            f"{f.target:<22} {f.connections:>11,} {f.connect_per_s:>10,.0f} {rss:>24} "
            f"{f.kib_per_connection:>9.1f} {f.processes:>5} {f.receiver_busy:>9.0%}  "
            f"{'' if f is base else f'{_times(rate):>7} {_times(memory):>9}'}"
        )
    if len(figures) > 1:
        print(
            "  vs: Skyrelay's connect rate / the peer's, and the peer's KiB per connection / "
            "Skyrelay's (above 1: Skyrelay connects faster, uses less memory)"
        )
    for f in figures:
        if f.target == "pushpin":
            ceiling = RECEIVER_PROCESSES * PUSHPIN_RAMP / RAMP_PAUSE
            print(
                f"  pushpin: clients connect gradually ({PUSHPIN_RAMP} per {RAMP_PAUSE:.1f} s "
                f"per load generator, at most {ceiling:,.0f}/s); its rate is a lower bound"
            )
        if f.receiver_busy > RECEIVER_BUSY_LIMIT:
            print(
                f"warning: a load generator for {f.target} was busy {f.receiver_busy:.0%} while "
                "connecting; the connect rate may be its, not the server's"
            )
        if f.released < f.connections:
            print(
                f"warning: only {f.released} of {f.connections} {f.target} connections got the "
                "releasing publication"
            )
    save_results(name, [asdict(f) for f in figures], quick=quick)
    if not quick:
        plot(figures, RESULTS / f"{name}.png")


def plot(figures: list[ConnectionFigures], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [f.target for f in figures]
    a.bar(names, [f.connect_per_s for f in figures], color="#3b82f6")
    a.set_title("connect + subscribe, /s (higher is better)")
    b.bar(names, [f.kib_per_connection for f in figures], color="#f97316")
    b.set_title("KiB per idle connection (lower is better)")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
