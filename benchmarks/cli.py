"""``skyrelay bench <scenario>``: the benchmark suite."""

from __future__ import annotations

import sys
from collections.abc import Callable

SCENARIOS = (
    "fanout",
    "channels",
    "connections",
    "ring",
    "failover",
    "replication",
    "durability",
    "storage",
    "latency",
    "soak",
    "wire",
    "backend",
)


def _runner(name: str) -> Callable[[list[str]], int]:
    if name == "fanout":
        from skyrelay.benchmarks import fanout  # noqa: PLC0415

        return fanout.run
    if name == "channels":
        from skyrelay.benchmarks import channels  # noqa: PLC0415

        return channels.run
    if name == "connections":
        from skyrelay.benchmarks import connections  # noqa: PLC0415

        return connections.run
    if name == "ring":
        from skyrelay.benchmarks import ringbench  # noqa: PLC0415

        return ringbench.run
    if name == "durability":
        from skyrelay.benchmarks import durability  # noqa: PLC0415

        return durability.run
    if name == "storage":
        from skyrelay.benchmarks import storage  # noqa: PLC0415

        return storage.run
    if name == "soak":
        from skyrelay.benchmarks import soak  # noqa: PLC0415

        return soak.run
    if name == "backend":
        from skyrelay.benchmarks import backend  # noqa: PLC0415

        return backend.run
    if name == "wire":
        from skyrelay.benchmarks import wire  # noqa: PLC0415

        return wire.run

    def legacy(argv: list[str]) -> int:
        import runpy  # noqa: PLC0415

        sys.argv = [f"skyrelay.benchmarks.{name}", *argv]
        runpy.run_module(f"skyrelay.benchmarks.{name}", run_name="__main__")
        return 0

    return legacy


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: skyrelay bench {{{','.join(SCENARIOS)}}} [options]", file=sys.stderr)
        return 2
    return _runner(argv[0])(argv[1:])
