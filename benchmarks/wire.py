"""Bytes on the wire for a realistic stream: a dashboard document of about 3 KB (a leaderboard
of 50 rows) whose next version changes one row, published at 10/s. Each subscriber reads the
same stream in its own way: JSON or protobuf, with nothing, permessage-deflate, fossil delta,
or both; every one rebuilds every version and checks it. Also what making a patch and a
compressed frame costs the edge per publication.

    skyrelay bench wire [--quick] [--updates 100] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import random
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from skyrelay.benchmarks.common import (
    API_KEY,
    RESULTS,
    bench_token,
    local_cluster,
    pyplot,
    save_results,
)
from skyrelay.client import json_codec, protobuf_codec
from skyrelay.edge.ws.deflate import Compressor
from skyrelay.protocol.fossil import apply, create

ROWS = 50
DEFAULT_UPDATES = 100
DEFAULT_RATE = 10.0
MODES = ("none", "deflate", "delta", "delta+deflate")
FORMATS = ("json", "protobuf")
# Repetitions of the in-process cost measurements.
COST_ROUNDS = 2000


@dataclass
class WireFigures:
    format: str
    mode: str
    updates: int
    # Everything read from the socket after the subscribe reply: frame headers included.
    bytes_total: int
    bytes_per_update: float
    # Against the same format with nothing.
    ratio: float


@dataclass
class CostFigures:
    document_bytes: int
    patch_bytes: float
    # Edge CPU per publication, microseconds: the patch (once per channel and publication)
    # and the compressed frame (once per process and message).
    patch_us: float
    deflate_us: float
    deflated_bytes: float


class Dashboard:
    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.doc = {
            f"row-{n}": {"team": f"Team {n}", "score": 1000 + n, "wins": n % 7, "trend": "up"}
            for n in range(ROWS)
        }

    def next(self) -> dict[str, Any]:
        key = f"row-{self.rng.randrange(ROWS)}"
        row = dict(self.doc[key])
        row["score"] = self.rng.randrange(10**6)
        row["trend"] = self.rng.choice(["up", "down", "flat"])
        self.doc[key] = row
        version: dict[str, Any] = orjson.loads(orjson.dumps(self.doc))
        return version


class Subscriber:
    """One raw WebSocket reading the channel as one mode does; counts the bytes it reads."""

    def __init__(self, url: str, channel: str, fmt: str, mode: str) -> None:
        self.url, self.channel, self.format, self.mode = url, channel, fmt, mode
        self.codec = protobuf_codec if fmt == "protobuf" else json_codec
        self.bytes = 0
        self.versions: list[Any] = []
        self._base = b""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        host, port = self.url.split("//")[1].split("/")[0].split(":")
        self._reader, self._writer = await asyncio.open_connection(host, int(port))
        headers = [
            "GET /connection/websocket HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.format == "protobuf":
            headers.append("Sec-WebSocket-Protocol: centrifuge-protobuf")
        if "deflate" in self.mode:
            headers.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        self._writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
        head = await self._reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        subscribe: dict[str, Any] = {"channel": self.channel}
        if "delta" in self.mode:
            subscribe["delta"] = "fossil"
        self._send(
            [{"id": 1, "connect": {"token": bench_token()}}, {"id": 2, "subscribe": subscribe}]
        )
        answered = 0
        while answered < 2:
            for message in self.codec.decode(await self._frame()):
                answered += 1 if getattr(message, "id", 0) else 0
        self.bytes = 0

    def _send(self, commands: list[dict[str, Any]]) -> None:
        assert self._writer is not None
        payload = self.codec.encode(commands)
        opcode = 0x2 if self.format == "protobuf" else 0x1
        size = len(payload)
        head = bytes((0x80 | opcode,))
        if size < 126:
            head += bytes((0x80 | size,))
        else:
            head += bytes((0x80 | 126,)) + size.to_bytes(2, "big")
        self._writer.write(head + b"\0\0\0\0" + payload)

    async def _frame(self) -> bytes:
        assert self._reader is not None
        head = await self._reader.readexactly(2)
        size, extra = head[1] & 0x7F, 0
        if size == 126:
            size, extra = int.from_bytes(await self._reader.readexactly(2), "big"), 2
        elif size == 127:
            size, extra = int.from_bytes(await self._reader.readexactly(8), "big"), 8
        payload = await self._reader.readexactly(size)
        self.bytes += 2 + extra + size
        if head[0] & 0x0F == 0x8:
            code = int.from_bytes(payload[:2], "big") if payload else 1005
            raise RuntimeError(
                f"{self.format} {self.mode}: closed by the edge, {code} {payload[2:]!r}"
            )
        if head[0] & 0x40:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return payload

    async def read(self, count: int) -> None:
        while len(self.versions) < count:
            for message in self.codec.decode(await self._frame()):
                if type(message).__name__ == "Ping":
                    self._send([{}])  # the pong the connect reply asked for
                    continue
                pub = getattr(message, "body", None)
                if getattr(message, "kind", "") != "pub" or pub is None:
                    continue
                self.versions.append(self._rebuild(pub))

    def _rebuild(self, pub: dict[str, Any]) -> Any:
        data = pub["data"]
        if "delta" not in self.mode:
            return data
        if isinstance(data, str):  # JSON: every publication's data is a string
            raw = data.encode()
        elif isinstance(data, bytes):  # protobuf: a patch (not JSON)
            raw = data
        else:  # protobuf: a full version, decoded as JSON on the way in
            raw = orjson.dumps(data)
        self._base = apply(self._base, raw) if pub.get("delta") else raw
        return orjson.loads(self._base)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def measure(edge: str, ws: str, updates: int, rate: float) -> list[WireFigures]:
    channel = f"wire-{os.getpid()}-{time.monotonic_ns()}"
    subscribers = [Subscriber(ws, channel, f, m) for f in FORMATS for m in MODES]
    for sub in subscribers:
        await sub.open()
    board = Dashboard()
    sent = []
    readers = [asyncio.ensure_future(s.read(updates)) for s in subscribers]
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for n in range(updates):
            version = board.next()
            body = {"channel": channel, "data": version, "delta": True}
            async with session.post(
                f"{edge}/api/publish", json=body, headers={"X-API-Key": API_KEY}
            ) as resp:
                assert resp.status == 200, await resp.text()
            sent.append(version)
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    figures = []
    for sub in subscribers:
        sub.close()
        if sub.versions != sent:
            raise AssertionError(f"{sub.format} {sub.mode}: a version was not rebuilt exactly")
        plain = next(s for s in subscribers if s.format == sub.format and s.mode == "none")
        figures.append(
            WireFigures(
                sub.format,
                sub.mode,
                updates,
                sub.bytes,
                sub.bytes / updates,
                sub.bytes / plain.bytes if plain.bytes else 0.0,
            )
        )
    return figures


def costs(rounds: int) -> CostFigures:
    board = Dashboard(5)
    versions = [orjson.dumps(board.next()) for _ in range(rounds + 1)]
    started = time.perf_counter()
    patches = [create(a, b) for a, b in itertools.pairwise(versions)]
    patch_us = (time.perf_counter() - started) / rounds * 1e6
    compressor = Compressor(1, 0)
    started = time.perf_counter()
    deflated = [compressor.compress(v) for v in versions[1:]]
    deflate_us = (time.perf_counter() - started) / rounds * 1e6
    return CostFigures(
        len(versions[0]),
        sum(map(len, patches)) / rounds,
        patch_us,
        deflate_us,
        sum(map(len, deflated)) / rounds,
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="skyrelay bench wire", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument("--updates", type=int, default=DEFAULT_UPDATES)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="publications/s")
    args = parser.parse_args(argv)
    updates = 20 if args.quick else args.updates
    rate = 50.0 if args.quick else args.rate
    with local_cluster(origins=1, edges=1, replication=1) as cluster:
        figures = asyncio.run(measure(cluster.edge_url(0), cluster.ws_url(0), updates, rate))
    cost = costs(100 if args.quick else COST_ROUNDS)
    report(figures, cost, quick=args.quick)
    return 0


def report(figures: list[WireFigures], cost: CostFigures, *, quick: bool) -> None:
    print(
        f"\nwire: a {cost.document_bytes:,}-byte document, one row changed per update, "
        f"{figures[0].updates} updates; bytes read by each subscriber, frames included"
    )
    print(f"{'format':<9} {'mode':<14} {'bytes/update':>13} {'vs none':>8}")
    for f in figures:
        print(f"{f.format:<9} {f.mode:<14} {f.bytes_per_update:>13,.0f} {f.ratio:>8.1%}")
    print(
        f"edge CPU per publication: patch {cost.patch_us:.0f} us ({cost.patch_bytes:.0f} bytes), "
        f"deflate {cost.deflate_us:.0f} us ({cost.deflated_bytes:.0f} bytes); both once per "
        "channel and publication, never per subscriber"
    )
    save_results(
        "wire", {"streams": [asdict(f) for f in figures], "cost": asdict(cost)}, quick=quick
    )
    if not quick:
        plot(figures, RESULTS / "wire.png")


def plot(figures: list[WireFigures], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.38
    for i, fmt in enumerate(FORMATS):
        rows = [f for f in figures if f.format == fmt]
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        ax.bar(xs, [f.bytes_per_update for f in rows], width, label=fmt)
    ax.set_xticks(range(len(MODES)), list(MODES))
    ax.set_yscale("log")
    ax.set_ylabel("bytes per update (log)")
    ax.set_title("a 3 KB dashboard, one row changed per update")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
