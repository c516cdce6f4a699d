"""Ring: the cost of a replica-set lookup, cached and not, and the fraction of channels that
move when a shard is added or removed.

    skyrelay bench ring
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.common import RESULTS
from ring import Member, Ring, moved_channels

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
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ring.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
