"""The PostgreSQL outbox with a real PostgreSQL server (Debian's packages, in a temporary
directory): rows of committed transactions are published once, in order per partition, across
a SIGKILL of the consumer's process and a restart of PostgreSQL; rolled-back rows never
appear."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from skyrelay.testing.cluster import LocalCluster
from skyrelay.testing.postgres import Postgres
from tests.integration.conftest import API_KEY, start_cluster
from tests.support.helpers import channel
from tests.support.postgres import postgres as new_postgres

pytestmark = pytest.mark.timeout(180)

# Centrifugo's outbox table.
TABLE = """
CREATE TABLE skyrelay_outbox (
    id bigserial PRIMARY KEY,
    method text NOT NULL DEFAULT 'publish',
    payload jsonb NOT NULL,
    partition bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX skyrelay_outbox_partition_id ON skyrelay_outbox (partition, id);
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = new_postgres()
    pg.start()

    async def create() -> None:
        conn = await asyncpg.connect(pg.dsn)
        await conn.execute(TABLE)
        await conn.close()

    asyncio.run(create())
    yield pg
    pg.cleanup()


@pytest.fixture(scope="module")
def outbox_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres
) -> Iterator[LocalCluster]:
    extra = f"""
[pg_outbox]
dsn = "{postgres.dsn}"
partitions = 2
batch_size = 20
poll_interval = 0.2
reconnect_delay = 0.2
"""
    cluster = start_cluster(
        tmp_path_factory.mktemp("pgoutbox"), origins=1, edges=1, replication=1, extra=extra
    )
    yield cluster
    cluster.stop()


async def insert(
    pg: Postgres, rows: list[tuple[str, int, dict[str, Any]]], *, commit: bool = True
) -> None:
    """Rows of (channel, partition, data) in one transaction of the app's."""
    conn = await asyncpg.connect(pg.dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.executemany(
            "INSERT INTO skyrelay_outbox (payload, partition) VALUES ($1::jsonb, $2)",
            [(orjson.dumps({"channel": ch, "data": data}).decode(), p) for ch, p, data in rows],
        )
        await (tx.commit() if commit else tx.rollback())
    finally:
        await conn.close()


async def left(pg: Postgres) -> int:
    conn = await asyncpg.connect(pg.dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM skyrelay_outbox")
        return count
    finally:
        await conn.close()


async def history(cluster: LocalCluster, ch: str) -> list[Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{cluster.edge_url(0)}/api/history",
            json={"channel": ch, "limit": -1},
            headers={"X-API-Key": API_KEY},
        ) as resp,
    ):
        body = await resp.json()
    pubs = body["result"]["publications"]
    assert [p["offset"] for p in pubs] == list(range(1, len(pubs) + 1))
    return [p["data"] for p in pubs]


async def drained(pg: Postgres, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await left(pg):
        assert time.monotonic() < deadline, "the outbox was not emptied"
        await asyncio.sleep(0.1)


async def test_committed_rows_are_published_once_in_order_and_rolled_back_ones_never(
    outbox_cluster: LocalCluster, postgres: Postgres
) -> None:
    a, b = f"fo:{channel()}", f"fo:{channel()}"
    rows = [(a if n % 2 else b, n % 2, {"n": n}) for n in range(40)]
    await insert(postgres, rows)
    await insert(postgres, [(a, 1, {"rolled": "back"})] * 5, commit=False)
    await insert(postgres, [(a, 1, {"n": 40}), (b, 0, {"n": 41})])
    await drained(postgres)
    assert await history(outbox_cluster, a) == [{"n": n} for n in [*range(1, 40, 2), 40]]
    assert await history(outbox_cluster, b) == [{"n": n} for n in [*range(0, 40, 2), 41]]


async def steady_inserts(pg: Postgres, ch: str, count: int, stop: asyncio.Event) -> int:
    """``count`` rows, three per transaction, as fast as PostgreSQL takes them; tolerant of
    the server restarting under it (a failed transaction is tried again)."""
    n = 0
    while n < count:
        batch = [(ch, 0, {"n": i}) for i in range(n, min(n + 3, count))]
        try:
            await insert(pg, batch)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.1)
            continue
        n += len(batch)
        if n >= count // 2:
            stop.set()
    return n


async def test_a_sigkill_of_the_consumer_loses_and_repeats_nothing(
    outbox_cluster: LocalCluster, postgres: Postgres
) -> None:
    ch = f"fo:{channel()}"
    halfway = asyncio.Event()
    writer = asyncio.create_task(steady_inserts(postgres, ch, 200, halfway))
    await halfway.wait()
    outbox_cluster.signal("e0", signal.SIGKILL)
    outbox_cluster.processes["e0"].wait(10)
    await writer
    outbox_cluster.restart("e0")
    await drained(postgres)
    assert await history(outbox_cluster, ch) == [{"n": n} for n in range(200)]


async def test_a_postgres_restart_loses_and_repeats_nothing(
    outbox_cluster: LocalCluster, postgres: Postgres
) -> None:
    ch = f"fo:{channel()}"
    halfway = asyncio.Event()
    writer = asyncio.create_task(steady_inserts(postgres, ch, 200, halfway))
    await halfway.wait()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: postgres.stop("immediate"))
    await loop.run_in_executor(None, postgres.start)
    await writer
    await drained(postgres)
    assert await history(outbox_cluster, ch) == [{"n": n} for n in range(200)]
