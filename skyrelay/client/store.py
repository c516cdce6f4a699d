"""Durable client state in one SQLite file: stream positions per channel, the outbox of
publications not yet acknowledged, and the transport that worked on each network.

``Store`` is blocking and tiny; ``AsyncStore`` runs it on one thread of its own, so the event
loop never waits on the disk and every call sees the calls before it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    channel TEXT PRIMARY KEY, epoch TEXT NOT NULL, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, data BLOB NOT NULL,
    key TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS transports (
    network TEXT PRIMARY KEY, transport TEXT NOT NULL, updated REAL NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """One publication in the outbox: ``data`` is its JSON (sealed already, when encrypted)."""

    seq: int
    channel: str
    data: bytes
    key: str


class Store:
    def __init__(self, path: str | Path | None) -> None:
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path), check_same_thread=False
        )
        # WAL lets readers and the writer work side by side; FULL makes every commit reach the
        # disk, so a publication the app was told is queued survives a power cut too.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def positions(self) -> dict[str, tuple[str, int]]:
        rows = self._db.execute("SELECT channel, epoch, offset FROM positions")
        return {ch: (epoch, offset) for ch, epoch, offset in rows}

    def save_positions(self, positions: dict[str, tuple[str, int]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT(channel) "
                "DO UPDATE SET epoch = excluded.epoch, offset = excluded.offset",
                [(ch, epoch, offset) for ch, (epoch, offset) in positions.items()],
            )

    def enqueue(self, channel: str, data: bytes, key: str, now: float) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO outbox (channel, data, key, created) VALUES (?, ?, ?, ?)",
                (channel, data, key, now),
            )
        return int(cursor.lastrowid or 0)

    def queued(self, limit: int = 100) -> list[Queued]:
        rows = self._db.execute(
            "SELECT seq, channel, data, key FROM outbox ORDER BY seq LIMIT ?", (limit,)
        )
        return [Queued(seq, ch, bytes(data), key) for seq, ch, data, key in rows]

    def queued_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def sent(self, seq: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def transport(self, network: str) -> tuple[str, float] | None:
        row = self._db.execute(
            "SELECT transport, updated FROM transports WHERE network = ?", (network,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def remember_transport(self, network: str, transport: str, now: float) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO transports VALUES (?, ?, ?) ON CONFLICT(network) "
                "DO UPDATE SET transport = excluded.transport, updated = excluded.updated",
                (network, transport, now),
            )


class AsyncStore:
    """``Store`` on a thread of its own; calls run one at a time, in the order made. Without
    a file the store lives in memory and its calls (microseconds, no disk) run inline."""

    def __init__(self, path: str | Path | None) -> None:
        self._pool = (
            None
            if path is None
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="skyrelay-store")
        )
        self._store: Store | None = None
        self._path = path

    async def open(self) -> None:
        self._store = await self._run(Store, self._path)

    async def call(self, method: Callable[..., _T], *args: Any) -> _T:
        """``await store.call(Store.queued, 10)``."""
        if self._store is None:
            raise RuntimeError("store not open")
        return await self._run(method, self._store, *args)

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
            self._store = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
