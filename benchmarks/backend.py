"""The app's backend in the loop, side by side with the direct paths, one run: connects per
second through the connect proxy (a backend that answers at once) against connects with a
token; rows per second published from a PostgreSQL outbox table against the server API's
publish (batches of 100); and with events on, connects per second (each answered once its
event is in the log) and events per second delivered to a backend that acks at once, from a
backlog built while it was down.

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
    events_connects_per_s: float = 0.0
    events: int = 0
    events_delivered_per_s: float = 0.0


class EventSink:
    """An events backend that acks at once (503 while ``down``), counting unique ids."""

    def __init__(self) -> None:
        self.down = False
        self.ids: set[str] = set()
        self.app = web.Application()
        self.app.router.add_post("/events", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        body = await request.json()
        self.ids.update(event["id"] for event in body["events"])
        return web.json_response({})


async def event_delivery(url: str, sink: EventSink, count: int) -> tuple[int, float]:
    """``count`` connections open and close while the backend is down; then the time until
    it has every connect and disconnect. Returns (events, events per second)."""
    sink.down = True
    await connects(url, count, {}, {"token": bench_token()})
    expected = 2 * count
    sink.ids.clear()
    sink.down = False
    started = time.monotonic()
    deadline = started + 300
    while len(sink.ids) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(sink.ids)} of {expected} events delivered in 5 minutes")
        await asyncio.sleep(0.01)
    return expected, expected / (time.monotonic() - started)


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
    _measure_events(figures, count)
    print(f"\nbackend: {count} connects, {rows} publications, one edge process")
    print(f"  connects/s   with a token {token_rate:>9,.0f}", end="")
    print(f"   through the connect proxy {proxy_rate:>9,.0f}")
    print(f"  publishes/s  server API   {api_rate:>9,.0f}", end="")
    print(f"   from the PostgreSQL outbox {outbox_rate:>8,.0f}")
    print(f"  with events: connects/s {figures.events_connects_per_s:>9,.0f}", end="")
    print(f"   events delivered/s {figures.events_delivered_per_s:>9,.0f}")
    save_results("backend", asdict(figures), quick=args.quick)
    return 0


def _measure_events(figures: Figures, count: int) -> None:
    """The same cluster shape with ``[events]`` on."""
    sink = EventSink()
    server = ThreadedApp(sink.app)
    port = server.start()
    extra = f"""
[events]
endpoint = "http://127.0.0.1:{port}/events"
batch_size = 500
retry_delay = 0.05
max_retry_delay = 0.05
"""
    try:
        with local_cluster(origins=1, edges=1, replication=1, extra_toml=extra) as cluster:
            url = cluster.ws_url(0)
            params = {"token": bench_token()}
            figures.events_connects_per_s = asyncio.run(connects(url, count, {}, params))
            figures.events, figures.events_delivered_per_s = asyncio.run(
                event_delivery(url, sink, count)
            )
    finally:
        server.stop()


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(OUTBOX_TABLE)
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
