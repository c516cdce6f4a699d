"""The consumer of the app's PostgreSQL outbox: rows the app inserts in its own transactions
are published through the ring, then removed, in one transaction of ours per batch.

- **Once.** A batch's rows stay locked (``FOR UPDATE``) while they are published and are
  deleted in the same transaction. A crash of either side before that commits leaves them in
  the table; they are published again with the same idempotency keys, which the origin
  answers without publishing twice (within ``origin.idempotency_window``).
- **In order per partition.** One consumer per partition across every edge process, by a
  PostgreSQL advisory lock per partition held for the connection's life; it takes rows in id
  order, and each channel's rows are published one after the other.
- **Rolled back is never seen**: a row exists for us only once the app's transaction commits.
- **Resumes by itself.** PostgreSQL gone: reconnect with backoff. This process gone: its
  locks go with its connection, and another edge takes the partitions over.

The rows' meaning is ``edge.pg_outbox_rows``; the publishing is the server API's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import Any

import asyncpg

from skyrelay.config import PgOutboxConfig
from skyrelay.edge.api import api_broadcast, api_publish
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.pg_outbox_rows import BadRow, Row, api_call, lanes
from skyrelay.protocol.codes import ErrorCode, ReplyError

log = logging.getLogger("skyrelay.edge.pg_outbox")

# Seconds between attempts to take partitions another consumer holds (it may be gone).
CLAIM_INTERVAL = 2.0


class Retry(Exception):
    """The batch could not be published now (the origin is busy or away): try it again."""


class PgOutbox:
    def __init__(self, node: EdgeNode, config: PgOutboxConfig) -> None:
        self.node = node
        self.config = config
        self.owned: set[int] = set()
        self._wake = asyncio.Event()
        # Rows published and removed, and rows removed as bad, since the start.
        self.published = 0
        self.dropped = 0

    def _lock_key(self, partition: int) -> int:
        # Advisory locks are one 64-bit space per database: a key of our own per table.
        return zlib.crc32(self.config.table.encode()) << 16 | partition

    async def run(self) -> None:
        delay = self.config.reconnect_delay
        while True:
            try:
                conn = await asyncpg.connect(self.config.dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("outbox: cannot connect to PostgreSQL", extra={"problem": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_delay * 10)
                continue
            delay = self.config.reconnect_delay
            try:
                await self._consume(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox: PostgreSQL went away", extra={"problem": str(exc)})
            finally:
                self.owned.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(delay)

    async def _consume(self, conn: asyncpg.Connection) -> None:
        channel = self.config.table.rsplit(".", 1)[-1]
        await conn.add_listener(channel, lambda *_: self._wake.set())
        loop = asyncio.get_running_loop()
        claimed_at = -CLAIM_INTERVAL
        while True:
            if loop.time() - claimed_at >= CLAIM_INTERVAL:
                await self._claim(conn)
                claimed_at = loop.time()
            moved = 0
            for partition in sorted(self.owned):
                moved += await self._batch(conn, partition)
            if not moved:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    async def _claim(self, conn: asyncpg.Connection) -> None:
        for partition in range(self.config.partitions):
            if partition not in self.owned and await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self._lock_key(partition)
            ):
                self.owned.add(partition)
                log.info("outbox: consuming partition", extra={"partition": partition})

    async def _batch(self, conn: asyncpg.Connection, partition: int) -> int:
        """Publish and remove the oldest rows of ``partition``; how many were removed."""
        table = self.config.table
        try:
            async with conn.transaction():
                records = await conn.fetch(
                    f"SELECT id, method, payload FROM {table} WHERE partition = $1 "
                    "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    partition,
                    self.config.batch_size,
                )
                if not records:
                    return 0
                rows = [Row(r["id"], r["method"], r["payload"]) for r in records]
                await self._publish(rows)
                await conn.execute(
                    f"DELETE FROM {table} WHERE id = ANY($1::bigint[])",
                    [row.id for row in rows],
                )
        except Retry:
            await asyncio.sleep(self.config.reconnect_delay)
            return 0
        self.published += len(rows)
        self.node.metrics.pg_outbox_rows.labels("published").inc(len(rows))
        return len(rows)

    async def _publish(self, rows: list[Row]) -> None:
        calls = []
        for row in rows:
            try:
                method, params = api_call(row, self.config.table)
            except BadRow as exc:
                self._drop(row, str(exc))
                continue
            calls.append((row, method, params))
        await asyncio.gather(*(self._lane(lane) for lane in lanes(calls)))

    async def _lane(self, lane: list[tuple[Row, str, dict[str, Any]]]) -> None:
        for row, method, params in lane:
            call = api_publish if method == "publish" else api_broadcast
            try:
                answer = await call(self.node, params)
            except ReplyError as exc:
                if exc.temporary or exc.code == ErrorCode.INTERNAL:
                    raise Retry from None
                self._drop(row, exc.message or str(exc.code))
                continue
            for response in answer.get("responses", ()):  # a broadcast's, channel by channel
                error = response.get("error")
                if error is not None and (error.get("temporary") or error.get("code") == 100):
                    raise Retry

    def _drop(self, row: Row, problem: str) -> None:
        """A row the server API refuses for good: logged and removed, so that it cannot stop
        its partition."""
        self.dropped += 1
        self.node.metrics.pg_outbox_rows.labels("refused").inc()
        log.error("outbox: row refused and removed", extra={"row": row.id, "problem": problem})
