"""The app's backend in the loop, side by side with the direct paths, one run: connects per
second through the connect proxy (a backend that answers at once) against connects with a
token, and rows per second published from a PostgreSQL outbox table against the server API's
publish (batches of 100).

    skyrelay bench backend [--quick] [--connects 2000] [--rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from skyrelay.benchmarks.common import API_KEY, bench_token, local_cluster, save_results
from skyrelay.testing.postgres import Postgres
from skyrelay.testing.threaded_app import ThreadedApp

# Connections opened at a time by the load generator.
CONCURRENCY = 50
OUTBOX_TABLE = """
CREATE TABLE skyrelay_outbox (
    id bigserial PRIMARY KEY, method text NOT NULL DEFAULT 'publish', payload jsonb NOT NULL,
    partition bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX skyrelay_outbox_partition_id ON skyrelay_outbox (partition, id);
"""


@dataclass
class Figures:
    connects: int
    token_connects_per_s: float
    proxy_connects_per_s: float
    rows: int
    api_publications_per_s: float
    outbox_rows_per_s: float


def instant_backend() -> ThreadedApp:
    """A connect proxy that answers at once, off the load generator's loop."""

    async def connect(request: web.Request) -> web.Response:
        return web.json_response({"result": {"user": request.cookies.get("session", "")}})

    app = web.Application()
    app.router.add_post("/connect", connect)
    return ThreadedApp(app)


async def connects(url: str, count: int, headers: dict[str, str], params: dict[str, Any]) -> float:
    """Connects (WebSocket, connect command, reply) per second, ``CONCURRENCY`` at a time."""
    slots = asyncio.Semaphore(CONCURRENCY)
    command = json.dumps({"id": 1, "connect": params})

    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with slots, session.ws_connect(url, headers=headers) as ws:
                await ws.send_str(command)
                reply = json.loads((await ws.receive(timeout=10)).data)
                if "connect" not in reply:
                    raise RuntimeError(f"connect failed: {reply}")

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.monotonic() - started)


async def api_publishes(edge: str, rows: int) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for start in range(0, rows, 100):
            commands = [
                {"publish": {"channel": f"kept:api-{n % 10}", "data": {"n": n}}}
                for n in range(start, min(start + 100, rows))
            ]
            async with session.post(
                f"{edge}/api/batch",
                json={"commands": commands, "parallel": True},
                headers={"X-API-Key": API_KEY},
            ) as resp:
                await resp.read()
        return rows / (time.monotonic() - started)


async def outbox_rows(dsn: str, rows: int) -> float:
    """Rows inserted (in transactions of 100) before the clock starts, then the time until
    the consumer has published and removed them all."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE skyrelay_outbox")
        payloads = [
            (json.dumps({"channel": f"kept:outbox-{n % 10}", "data": {"n": n}}), n % 10 % 2)
            for n in range(rows)
        ]
        # The consumer would start at once: the rows go in one transaction, then the clock.
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO skyrelay_outbox (payload, partition) VALUES ($1::jsonb, $2)", payloads
            )
        started = time.monotonic()
        deadline = started + 300
        while await conn.fetchval("SELECT count(*) FROM skyrelay_outbox"):
            if time.monotonic() > deadline:
                raise RuntimeError("the outbox was not emptied in 5 minutes")
            await asyncio.sleep(0.05)
        return rows / (time.monotonic() - started)
    finally:
        await conn.close()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="skyrelay bench backend", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args(argv)
    count, rows = (100, 300) if args.quick else (args.connects, args.rows)
    backend = instant_backend()
    backend.start()
    pg = Postgres()
    pg.start()
    try:
        asyncio.run(_create_table(pg.dsn))
        extra = f"""
[proxies.connect]
endpoint = "http://127.0.0.1:{backend.port}/connect"
http_headers = ["Cookie"]

[pg_outbox]
dsn = "{pg.dsn}"
partitions = 2
batch_size = 100
poll_interval = 0.1
"""
        with local_cluster(
            origins=1,
            edges=1,
            replication=1,
            extra_toml=extra,
            edge_toml='connect_proxy = "connect"',
        ) as cluster:
            url = cluster.ws_url(0)
            token_rate = asyncio.run(connects(url, count, {}, {"token": bench_token()}))
            proxy_rate = asyncio.run(connects(url, count, {"Cookie": "session=bench"}, {}))
            api_rate = asyncio.run(api_publishes(cluster.edge_url(0), rows))
            outbox_rate = asyncio.run(outbox_rows(pg.dsn, rows))
    finally:
        pg.cleanup()
        backend.stop()
    figures = Figures(count, token_rate, proxy_rate, rows, api_rate, outbox_rate)
    print(f"\nbackend: {count} connects, {rows} publications, one edge process")
    print(f"  connects/s   with a token {token_rate:>9,.0f}", end="")
    print(f"   through the connect proxy {proxy_rate:>9,.0f}")
    print(f"  publishes/s  server API   {api_rate:>9,.0f}", end="")
    print(f"   from the PostgreSQL outbox {outbox_rate:>8,.0f}")
    save_results("backend", asdict(figures), quick=args.quick)
    return 0


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(OUTBOX_TABLE)
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
