"""Ring: the cost of a replica-set lookup, cached and not, and the fraction of channels that
move when a shard is added or removed.

    skyrelay bench ring
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from skyrelay.benchmarks.common import RESULTS, pyplot, save_results
from skyrelay.ring import Member, Ring, moved_channels

CHANNELS = 100_000


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="skyrelay bench ring", description=__doc__)
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--replication", type=int, default=3)
    args = parser.parse_args(argv)
    names = [f"channel-{i}" for i in range(CHANNELS)]
    ring = Ring([Member(f"s{i}") for i in range(args.shards)], args.replication)
    started = time.perf_counter()
    for name in names:
        ring.replicas(name)
    cold = (time.perf_counter() - started) / CHANNELS * 1e6
    started = time.perf_counter()
    for name in names:
        ring.replicas(name)
    warm = (time.perf_counter() - started) / CHANNELS * 1e6
    sample = names[:10_000]
    grown = Ring([Member(f"s{i}") for i in range(args.shards + 1)], args.replication)
    shrunk = Ring([Member(f"s{i}") for i in range(args.shards - 1)], args.replication)
    figures = {
        "lookup_us_uncached": cold,
        "lookup_us_cached": warm,
        "add_primaries_moved": sum(ring.owner(c) != grown.owner(c) for c in sample) / len(sample),
        "add_sets_changed": moved_channels(ring, grown, sample) / len(sample),
        "remove_primaries_moved": sum(ring.owner(c) != shrunk.owner(c) for c in sample)
        / len(sample),
        "ideal_add": 1 / (args.shards + 1),
        "ideal_remove": 1 / args.shards,
    }
    print(f"\nring: {args.shards} shards, replication {args.replication}")
    print(f"  lookup, uncached         {cold:8.2f} us")
    print(f"  lookup, cached           {warm:8.2f} us")
    print(
        f"  add a shard: primaries moved {figures['add_primaries_moved']:.1%} "
        f"(ideal {figures['ideal_add']:.1%}), "
        f"replica sets changed {figures['add_sets_changed']:.1%}"
    )
    print(
        f"  remove a shard: primaries moved {figures['remove_primaries_moved']:.1%} "
        f"(ideal {figures['ideal_remove']:.1%})"
    )
    save_results("ring", figures)
    plot(figures, args.shards, RESULTS / "ring.png")
    return 0


def plot(figures: dict[str, float], shards: int, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.bar(["uncached", "cached"], [figures["lookup_us_uncached"], figures["lookup_us_cached"]])
    a.set_title("replica-set lookup, us")
    kinds = [f"add a shard ({shards} to {shards + 1})", f"remove one ({shards} to {shards - 1})"]
    moved = [figures["add_primaries_moved"], figures["remove_primaries_moved"]]
    ideal = [figures["ideal_add"], figures["ideal_remove"]]
    b.bar([0, 1], [m * 100 for m in moved], 0.4, label="leaders moved")
    b.bar([0.4, 1.4], [i * 100 for i in ideal], 0.4, label="ideal (1/shards)")
    b.set_xticks([0.2, 1.2], kinds)
    b.set_title("% of channels whose leader moves")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
