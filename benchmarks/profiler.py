"""Sample a running server with py-spy while a benchmark runs, and say where its time went.

    with profiled(pid, RESULTS / "fanout-edge.profile") as profile:
        ...  # the load
    print_top(profile)

The output is py-spy's raw format (collapsed stacks, one per line with its sample count),
which flame-graph tools and speedscope read.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Samples per second.
RATE = 250
# Seconds to wait for py-spy to write its output once told to stop.
STOP_TIMEOUT = 30.0


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return found


@contextmanager
def profiled(pid: int, output: Path) -> Iterator[Path]:
    """py-spy samples ``pid`` and its children (workers) while the block runs."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [_py_spy(), "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE)]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield output
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
        if not output.exists():
            print(f"py-spy wrote no profile: {err.decode(errors='replace').strip()}")


def self_time(output: Path) -> list[tuple[float, str]]:
    """Each function's share of the samples spent in it (not in what it called)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in output.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        counts[stack.rsplit(";", 1)[-1]] += int(count)
    return [(n / total, frame) for frame, n in counts.most_common()] if total else []


def print_top(output: Path, lines: int = 10) -> None:
    if not output.exists():
        return
    print(f"\nwhere the edge's time went (py-spy, self time; all stacks in {output}):")
    for share, frame in self_time(output)[:lines]:
        print(f"  {share:6.1%}  {frame}")
