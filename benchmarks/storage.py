"""The storage choice, measured: the shard's segment log against SQLite in WAL mode (standard
library), both writing the same publication records in the same group commits, with the same
retention, at level disk (written to the OS) and fsync (on stable storage).

One process, no network: what each costs the shard's event loop per publication, and how long
reading everything back takes at start-up.

    python -m skyrelay.benchmarks.storage [--publications 200000] [--channels 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from skyrelay.benchmarks.common import save_results
from skyrelay.origin.storage.store import Batch, ShardStore

# Publications per group commit (one loop turn's worth under load) and kept per channel.
BATCH = 200
HISTORY = 100


def record(offset: int) -> dict[str, Any]:
    return {
        "offset": offset,
        "data": {"n": offset, "text": "x" * 60},
        "time": int(time.time() * 1000),
    }


async def until_resolved(store: ShardStore, marker: int) -> None:
    resolved = asyncio.Event()

    def heard(batch: Batch) -> None:
        if batch.last >= marker:
            resolved.set()

    store.listeners.append(heard)
    await resolved.wait()
    store.listeners.remove(heard)


async def segment_log(path: Path, fsync: bool, total: int, channels: int) -> tuple[float, float]:
    store = ShardStore(path, fsync=fsync, segment_bytes=4 << 20)
    copies: dict[str, tuple[dict[str, Any], int]] = {}
    store.snapshots = copies.get
    tops = dict.fromkeys((f"c{i}" for i in range(channels)), 0)
    for channel in tops:
        copies[channel] = ({"epoch": "e", "top": 0, "committed": 0, "pubs": []}, 1)
        store.save_state(channel, copies[channel][0], 1)
    started = time.process_time()
    written = 0
    while written < total:
        for _ in range(BATCH):
            channel = f"c{written % channels}"
            tops[channel] += 1
            marker = store.save_publications(channel, 1, [record(tops[channel])], tops[channel])
            written += 1
        await until_resolved(store, marker)
    cpu = time.process_time() - started
    await store.close()
    started = time.perf_counter()
    again = ShardStore(path, fsync=fsync, segment_bytes=4 << 20)
    again.load(lambda _: HISTORY, lambda _: 3600.0, time.time())
    return cpu, time.perf_counter() - started


def sqlite_wal(path: Path, fsync: bool, total: int, channels: int) -> tuple[float, float]:
    db = sqlite3.connect(path / "shard.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    db.execute("CREATE TABLE pubs (ch TEXT, off INTEGER, rec BLOB, PRIMARY KEY (ch, off))")
    tops = dict.fromkeys((f"c{i}" for i in range(channels)), 0)
    started = time.process_time()
    written = 0
    while written < total:
        rows, trims = [], []
        for _ in range(BATCH):
            channel = f"c{written % channels}"
            tops[channel] += 1
            rows.append((channel, tops[channel], orjson.dumps(record(tops[channel]))))
            trims.append((channel, tops[channel] - HISTORY))
            written += 1
        db.execute("BEGIN")
        db.executemany("INSERT INTO pubs VALUES (?, ?, ?)", rows)
        db.executemany("DELETE FROM pubs WHERE ch = ? AND off <= ?", trims)
        db.execute("COMMIT")
    cpu = time.process_time() - started
    db.close()
    started = time.perf_counter()
    db = sqlite3.connect(path / "shard.db")
    for _ in db.execute("SELECT ch, off, rec FROM pubs ORDER BY ch, off"):
        pass
    db.close()
    return cpu, time.perf_counter() - started


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publications", type=int, default=200_000)
    parser.add_argument("--channels", type=int, default=100)
    args = parser.parse_args(argv)
    total, channels = args.publications, args.channels
    print(f"{total:,} publications, {channels} channels, {BATCH} per commit, {HISTORY} kept")
    header = ("store", "level", "pubs/s (CPU)", "us/pub", "disk MiB", "reload s")
    print("{:<14} {:<6} {:>13} {:>7} {:>9} {:>9}".format(*header))
    rows = []
    for name in ("segment log", "sqlite wal"):
        for fsync in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp)
                if name == "segment log":
                    cpu, reload = asyncio.run(segment_log(path, fsync, total, channels))
                else:
                    cpu, reload = sqlite_wal(path, fsync, total, channels)
                size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            level = "fsync" if fsync else "disk"
            row = {
                "store": name,
                "level": level,
                "publications_per_cpu_second": total / cpu,
                "us_per_publication": cpu / total * 1e6,
                "disk_mib": size / 2**20,
                "reload_seconds": reload,
            }
            rows.append(row)
            print(
                f"{name:<14} {level:<6} {total / cpu:>13,.0f} {cpu / total * 1e6:>7.1f} "
                f"{size / 2**20:>9.1f} {reload:>9.2f}"
            )
    save_results("storage", rows)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(run(sys.argv[1:]))
