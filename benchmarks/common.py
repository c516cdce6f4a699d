"""What the benchmark scripts share: a local cluster on fixed ports, tokens and the API."""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from skyrelay.ring import Member, Ring
from skyrelay.testing.cluster import ClusterSpec, LocalCluster
from skyrelay.tokens import mint_token

# Where scenarios write their JSON and plots; tests point it at a temporary directory so
# that a smoke run never rewrites the published figures.
RESULTS = Path(os.environ.get("SKYRELAY_BENCH_RESULTS") or Path(__file__).parent / "results")

SECRET = "bench-secret-" + "0" * 48
API_KEY = "bench-api-key"

# Namespaces and fast health checks for the scenarios.
BENCH_TOML = """
[health]
interval = 0.2
timeout = 0.3
fall = 2
rise = 2

[namespaces.bench]
history_size = 1000
history_ttl = 600

[namespaces.kept]
history_size = 100
history_ttl = 600
"""


# Load generators connect many clients as one user: no per-user or publish-rate limit.
# Compression on: it applies only to the receivers that ask for it (``--deflate``).
BENCH_EDGE_TOML = (
    "max_connections_per_user = 0\nclient_publish_rate = 0\nwebsocket_compression = true"
)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(edges: int = 2, origins: int = 3) -> int:
    """A base port whose edge ports and origin ports (base + 100 ...) are all free now."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        ports = [base + i for i in range(edges)] + [base + 100 + i for i in range(origins)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range")


@contextmanager
def local_cluster(
    port: int | None = None, extra_toml: str = "", edge_toml: str = "", **spec: Any
) -> Iterator[LocalCluster]:
    """A cluster on ``port`` (default: a free range, retried if a port is taken meanwhile);
    ``extra_toml`` and ``edge_toml`` add to the benchmark's config."""
    with tempfile.TemporaryDirectory() as workdir:
        for attempt in range(3):
            base = (
                port
                if port is not None
                else free_base(spec.get("edges", 2), spec.get("origins", 3))
            )
            cluster = LocalCluster(
                ClusterSpec(
                    port=base,
                    extra_toml=BENCH_TOML + extra_toml,
                    edge_toml=BENCH_EDGE_TOML + "\n" + edge_toml,
                    **spec,
                ),
                Path(workdir),
                SECRET,
                API_KEY,
                log_dir=Path(workdir),
            )
            try:
                cluster.start()
                break
            except RuntimeError:
                if port is not None or attempt == 2:
                    raise
        try:
            yield cluster
        finally:
            cluster.stop()


def bench_token(user: str = "bench") -> str:
    return mint_token(SECRET, user, now=time.time(), ttl=3600)


def channels_led_by(shard: str, shards: int, replication: int, count: int) -> list[str]:
    """Channels whose preferred primary is ``shard``."""
    ring = Ring([Member(f"o{i}") for i in range(shards)], replication)
    found: list[str] = []
    i = 0
    while len(found) < count:
        name = f"bench:c{i}"
        if ring.owner(name) == shard:
            found.append(name)
        i += 1
    return found


async def api_publish(
    session: aiohttp.ClientSession, url: str, channel: str, data: Any, key: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel, "data": data}
    if key is not None:
        body["idempotency_key"] = key
    async with session.post(
        f"{url}/api/publish", data=json.dumps(body), headers={"X-API-Key": API_KEY}
    ) as resp:
        answer: dict[str, Any] = await resp.json()
        return answer


async def subscribed_socket(
    session: aiohttp.ClientSession, url: str, channels: list[str]
) -> aiohttp.ClientWebSocketResponse:
    """A raw WebSocket client, connected and subscribed to ``channels``."""
    ws = await session.ws_connect(url)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": bench_token()}}))
    await ws.receive()
    for i, channel in enumerate(channels):
        await ws.send_str(json.dumps({"id": 2 + i, "subscribe": {"channel": channel}}))
        await ws.receive()
    return ws


async def frames(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """Every reply and push a raw client receives (one per line of a frame), answering the
    server's pings on the way."""
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        for line in msg.data.split("\n"):
            obj = json.loads(line)
            if obj:
                yield obj
            else:
                await ws.send_str("{}")


async def publications(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The publications a raw client receives."""
    async for obj in frames(ws):
        pub = obj.get("push", {}).get("pub")
        if pub is not None:
            yield pub


def rss_kib(pid: int) -> int:
    """A process's resident memory (VmRSS) in KiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc/<pid>/stat."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # Gone since the listing.
            continue
        # The command name (in parentheses) may hold spaces; the parent is the second field
        # after it.
        found[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_rss_kib(pid: int) -> int:
    """The summed resident memory (VmRSS) in KiB of ``pid`` and all its descendants, e.g. a
    server that runs several processes. Pages that processes share (after a fork) count once
    per process."""
    return sum(rss_kib(p) for p in process_tree(pid))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend, or None (and a message) without it."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib missing: no plot")
        return None
    return plt


def save_results(name: str, data: Any, *, quick: bool = False, indent: int = 2) -> Path:
    """Write a scenario's figures as ``<name>.json`` (``<name>-quick.json``) into RESULTS."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"{name}-quick.json" if quick else f"{name}.json")
    out.write_text(json.dumps(data, indent=indent))
    print(f"results: {out}")
    return out
