"""Soak: minutes of steady publishing and client churn on a local cluster (3 origins,
replication 3, 2 edges) while a shard is killed (SIGKILL) and restarted every minute, round
robin. Counts acked publications lost and duplicates, and follows every process's memory.

    skyrelay bench soak [--minutes 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from skyrelay.benchmarks.common import RESULTS, local_cluster, pyplot, rss_kib, save_results
from skyrelay.benchmarks.soakload import Publisher, Slot, Subscriber
from skyrelay.testing.cluster import LocalCluster

CHANNELS = [f"bench:soak{i}" for i in range(20)]
# Publications per second over all channels.
RATE = 150.0
# Subscribers per edge that never churn, and that do; channels each one follows.
STABLE_PER_EDGE = 3
CHURNING_PER_EDGE = 6
CHANNELS_PER_SUBSCRIBER = 10
# Every CHURN_EVERY seconds CHURN_COUNT connections close; each comes back on a random edge
# after an offline gap, recovering what it missed.
CHURN_EVERY = 3.0
CHURN_COUNT = 2
OFFLINE = (0.2, 2.0)
# Seconds between memory samples; seconds after the end for every delivery to arrive.
SAMPLE_EVERY = 2.0
DRAIN = 30.0


@dataclass
class Plan:
    seconds: float
    kill_every: float
    warm_up: float


@dataclass
class Run:
    cluster: LocalCluster
    start: float = 0.0
    kills: list[dict[str, Any]] = field(default_factory=list)
    # Process name -> [seconds since start, MiB, pid].
    memory: dict[str, list[list[float]]] = field(default_factory=dict)

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.start


async def kill_loop(run: Run, plan: Plan) -> None:
    """SIGKILL a shard every ``kill_every`` seconds, round robin, and start it again."""
    k = 0
    while (at := plan.kill_every * (k + 1)) < plan.seconds:
        await asyncio.sleep(max(0.0, at - run.now()))
        name = f"o{k % 3}"
        proc = run.cluster.processes[name]
        killed = run.now()
        run.cluster.signal(name, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        ready: float | None = None
        try:
            # restart() waits for /ready with its own bounded deadline.
            await asyncio.to_thread(run.cluster.restart, name)
            ready = run.now()
        except (RuntimeError, TimeoutError) as exc:
            print(f"warning: {name} did not come back: {exc}", file=sys.stderr)
        run.kills.append({"process": name, "at": round(killed, 2), "ready": ready})
        k += 1


async def memory_loop(run: Run, seconds: float) -> None:
    """Every process's RSS, by name: a restarted process is followed under its new PID."""
    while True:
        t = run.now()
        for name, proc in list(run.cluster.processes.items()):
            kib = rss_kib(proc.pid) if proc.poll() is None else 0
            if kib:
                run.memory.setdefault(name, []).append([round(t, 1), kib / 1024, proc.pid])
        if t >= seconds:
            return
        await asyncio.sleep(SAMPLE_EVERY)


async def churn_loop(
    run: Run, session: aiohttp.ClientSession, subs: list[Subscriber], seconds: float
) -> None:
    churning = [s for s in subs if not s.stable]
    pending: set[asyncio.Task[None]] = set()
    while run.now() + CHURN_EVERY < seconds:
        await asyncio.sleep(CHURN_EVERY)
        for sub in random.sample(churning, CHURN_COUNT):
            if sub.ready():
                task = asyncio.ensure_future(reconnect(run, session, sub, seconds))
                pending.add(task)
                task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=DRAIN)


async def reconnect(
    run: Run, session: aiohttp.ClientSession, sub: Subscriber, seconds: float
) -> None:
    await sub.close()
    await asyncio.sleep(random.uniform(*OFFLINE))  # the gap recovery has to fill
    sub.edge = random.randrange(2)
    start(run, session, sub, seconds)


def start(run: Run, session: aiohttp.ClientSession, sub: Subscriber, seconds: float) -> None:
    until = run.start + seconds + DRAIN
    sub.task = asyncio.ensure_future(sub.run(session, run.cluster.ws_url(sub.edge), until))


def subscribers() -> list[Subscriber]:
    subs: list[Subscriber] = []
    for edge in range(2):
        for i in range(STABLE_PER_EDGE + CHURNING_PER_EDGE):
            first = (edge * 7 + i * 3) % len(CHANNELS)
            names = [CHANNELS[(first + j) % len(CHANNELS)] for j in range(CHANNELS_PER_SUBSCRIBER)]
            subs.append(
                Subscriber(f"e{edge}-{i}", [Slot(c) for c in names], i < STABLE_PER_EDGE, edge)
            )
    return subs


def missing(subs: list[Subscriber], pub: Publisher) -> dict[str, Any]:
    """Per subscription: acked offsets it never received."""
    out: dict[str, Any] = {}
    for sub in subs:
        for slot in sub.slots:
            gone = slot.missing(set(pub.acked.get(slot.channel, {})))
            if gone:
                out[f"{sub.name}/{slot.channel}"] = sorted(gone)
    return out


async def soak(cluster: LocalCluster, plan: Plan) -> dict[str, Any]:
    run = Run(cluster)
    run.start = asyncio.get_running_loop().time()
    subs = subscribers()
    pub = Publisher([cluster.edge_url(0), cluster.edge_url(1)], CHANNELS)
    async with aiohttp.ClientSession() as session:
        for sub in subs:
            start(run, session, sub, plan.seconds)
        await wait_for(lambda: all(s.ready() for s in subs), 30.0, "subscribers")
        run.start = asyncio.get_running_loop().time()
        memory = asyncio.ensure_future(memory_loop(run, plan.seconds))
        kills = asyncio.ensure_future(kill_loop(run, plan))
        churn = asyncio.ensure_future(churn_loop(run, session, subs, plan.seconds))
        await pub.run(session, RATE, plan.seconds)
        await asyncio.gather(kills, churn)
        # Churned connections come back, then every acked publication has time to arrive.
        await wait_for(lambda: all(s.ready() for s in subs), DRAIN, "reconnects")
        await wait_for(lambda: not missing(subs, pub), DRAIN, "deliveries")
        await memory
        for sub in subs:
            await sub.close()
    return summarise(run, plan, subs, pub)


async def wait_for(check: Any, seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            print(f"warning: {what} not complete after {seconds:.0f} s", file=sys.stderr)
            return
        await asyncio.sleep(0.2)


def summarise(run: Run, plan: Plan, subs: list[Subscriber], pub: Publisher) -> dict[str, Any]:
    lost = missing(subs, pub)
    slots = [slot for sub in subs for slot in sub.slots]
    restarted = {k["process"] for k in run.kills}
    growth = {
        name: memory_growth(samples, plan.warm_up, name in restarted)
        for name, samples in sorted(run.memory.items())
    }
    acked_at = {(c, o): t for c, offs in pub.acked.items() for o, t in offs.items()}
    return {
        "seconds": plan.seconds,
        "rate": RATE,
        "channels": len(CHANNELS),
        "subscribers": len(subs),
        "subscriptions": len(slots),
        "published": pub.sent,
        "acked": sum(len(v) for v in pub.acked.values()),
        "given_up": pub.given_up,
        "retries": pub.retries,
        "deliveries": sum(len(s.received) + s.duplicates for s in slots),
        "acked_lost": sum(len(v) for v in lost.values()),
        "lost": {k: v[:50] for k, v in lost.items()},
        "lost_acked_at": sorted(
            {
                round(acked_at[(k.split("/")[1], o)] - run.start, 1)
                for k, v in lost.items()
                for o in v
            }
        )[:50],
        "duplicates": sum(s.duplicates for s in slots),
        "recoveries": sum(s.recoveries for s in slots),
        "unrecovered": sum(len(s.unrecovered) for s in slots),
        "reconnects": sum(s.connections for s in subs) - len(subs),
        "dropped": sum(s.dropped for s in subs),
        "epochs_changed": sorted(c for c, e in pub.epochs.items() if len(e) > 1),
        "kills": run.kills,
        "warm_up": plan.warm_up,
        "memory_growth": growth,
        "memory": run.memory,
    }


def memory_growth(samples: list[list[float]], warm_up: float, restarted: bool) -> dict[str, Any]:
    """RSS growth from the end of the warm-up to the end. A restarted process starts afresh:
    its growth is taken over its last life, from ``warm_up`` / 6 seconds after its start
    (imports and the resync done)."""
    since = warm_up
    if restarted:
        life = [s for s in samples if s[2] == samples[-1][2]]
        samples, since = life, life[0][0] + warm_up / 6
    warm = next((s for s in samples if s[0] >= since), samples[-1])
    return {
        "from_s": warm[0],
        "warm_mib": round(warm[1], 1),
        "end_mib": round(samples[-1][1], 1),
        "growth_mib": round(samples[-1][1] - warm[1], 1),
        "restarted": restarted,
    }


def report(result: dict[str, Any], *, quick: bool) -> None:
    minutes = result["seconds"] / 60
    print(
        f"\nsoak: {minutes:.1f} min, {result['rate']:.0f} publications/s over "
        f"{result['channels']} channels, {result['subscriptions']} subscriptions on "
        f"{result['subscribers']} clients, {len(result['kills'])} shard kills"
    )
    rows = [
        ("published", result["published"]),
        ("acked", result["acked"]),
        ("not acked (gave up)", result["given_up"]),
        ("publish retries", result["retries"]),
        ("deliveries", result["deliveries"]),
        ("acked lost", result["acked_lost"]),
        ("duplicates", result["duplicates"]),
        ("churn reconnects", result["reconnects"]),
        ("recovered subscriptions", result["recoveries"]),
        ("not recovered (told)", result["unrecovered"]),
        ("connections dropped by the edge", result["dropped"]),
    ]
    for label, value in rows:
        print(f"  {label:<34} {value:>10,}")
    for kill in result["kills"]:
        ready = kill["ready"]
        back = f"ready after {ready - kill['at']:.1f} s" if ready is not None else "NOT back"
        print(f"  kill {kill['process']} at {kill['at']:6.1f} s: {back}")
    print(f"  memory (MiB) after the {result['warm_up']:.0f} s warm-up -> end:")
    for name, g in result["memory_growth"].items():
        note = f"  (restarted: from {g['from_s']:.0f} s, its last life)" if g["restarted"] else ""
        print(
            f"    {name:<4} {g['warm_mib']:7.1f} -> {g['end_mib']:7.1f}  "
            f"growth {g['growth_mib']:+6.1f}{note}"
        )
    if result["acked_lost"]:
        print(f"  LOST (subscription: offsets): {json.dumps(result['lost'])[:2000]}")
        print(f"  lost publications were acked at (s): {result['lost_acked_at']}")
    if result["epochs_changed"]:
        print(f"  channels whose epoch changed: {result['epochs_changed']}")
    save_results("soak", result, quick=quick, indent=1)
    if not quick:
        plot(result, RESULTS / "soak.png")


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, samples in sorted(result["memory"].items()):
        ax.plot([s[0] / 60 for s in samples], [s[1] for s in samples], label=name)
    for kill in result["kills"]:
        ax.axvline(kill["at"] / 60, color="#999999", linestyle=":", linewidth=1)
        ax.annotate(
            f"kill {kill['process']}",
            (kill["at"] / 60, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )
    ax.axvline(result["warm_up"] / 60, color="#16a34a", linestyle="--", linewidth=1)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS, MiB")
    ax.set_title(
        f"Soak: memory per process; acked lost {result['acked_lost']}, "
        f"duplicates {result['duplicates']}"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="skyrelay bench soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="20 s with one kill, for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan(seconds=20.0, kill_every=10.0, warm_up=5.0)
    else:
        if args.minutes < 2:
            parser.error("--minutes must be at least 2 (one of warm-up, one with a kill)")
        plan = Plan(seconds=args.minutes * 60, kill_every=60.0, warm_up=60.0)
    with local_cluster(origins=3, edges=2, replication=3) as cluster:
        result = asyncio.run(soak(cluster, plan))
    report(result, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
