"""The workers of one edge, talking to each other over private unix sockets.

All workers listen on the edge's port with SO_REUSEPORT, so the kernel hands each new
connection to any of them. What must reach one particular worker goes over the mesh:

- ``POST /emulation`` for a session another worker owns (the ``node`` in the body names it);
- ``/metrics``: the worker that gets the scrape gathers every sibling's exposition.

Each worker serves a small private app on ``<dir>/w<index>.sock``; the supervisor makes
``<dir>`` (mode 0700) and passes it to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from skyrelay.edge.emulation_request import parse
from skyrelay.edge.metricsmerge import merge_expositions
from skyrelay.edge.node import EdgeNode
from skyrelay.runtime.tasks import spawn

# Paths of the private app (never exposed on the edge's port).
EMULATION_PATH = "/worker/emulation"
METRICS_PATH = "/worker/metrics"
HEALTH_PATH = "/worker/health"
STATUS_PATH = "/worker/status"


def worker_node_id(edge_id: str, index: int) -> str:
    """The node id of a worker: its links to origins and its emulation sessions carry it."""
    return f"{edge_id}.{index}"


def worker_socket(directory: Path, index: int) -> Path:
    return directory / f"w{index}.sock"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Who this worker is among the workers of its edge."""

    edge_id: str
    index: int
    count: int
    directory: Path

    @property
    def node_id(self) -> str:
        return worker_node_id(self.edge_id, self.index)

    def index_of(self, node_id: str) -> int | None:
        """The worker of this edge that ``node_id`` names, or None."""
        prefix, dot, suffix = node_id.rpartition(".")
        if not dot or prefix != self.edge_id or not suffix.isdigit():
            return None
        index = int(suffix)
        return index if index < self.count and suffix == str(index) else None

    def siblings(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]


class Mesh:
    """This worker's end of the mesh: its private endpoint and a client to every sibling."""

    def __init__(self, spec: WorkerSpec, node: EdgeNode) -> None:
        self.spec = spec
        self.node = node
        self.forwards = Counter(
            "skyrelay_edge_worker_forwards",
            "POST /emulation requests passed to the worker that owns the session, by outcome",
            ["outcome"],
            registry=node.metrics.registry,
        )
        self._timeout = aiohttp.ClientTimeout(total=node.config.edge.worker_call_timeout)
        self._clients: dict[int, aiohttp.ClientSession] = {}
        self._runner: web.AppRunner | None = None
        # This worker's part of the status page, set by the app (StatusBoard.local).
        self.status_part: Callable[[], dict[str, Any]] | None = None

    @property
    def socket(self) -> Path:
        return worker_socket(self.spec.directory, self.spec.index)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(EMULATION_PATH, self._emulation)
        app.router.add_get(METRICS_PATH, self._local_metrics)
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(STATUS_PATH, self._status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # A worker restarted after a crash finds its predecessor's socket file.
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        await web.UnixSite(self._runner, str(self.socket)).start()
        for index in self.spec.siblings():
            # No keep-alive: a sibling restarts with a new socket, and a pooled connection
            # to the old one would fail the next call.
            connector = aiohttp.UnixConnector(
                path=str(worker_socket(self.spec.directory, index)), force_close=True
            )
            self._clients[index] = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def stop(self) -> None:
        for client in self._clients.values():
            await client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def forward_emulation(self, index: int, body: bytes) -> bool:
        """Pass a POST /emulation body to worker ``index``; False if it could not be reached."""
        try:
            async with self._clients[index].post(
                f"http://worker{EMULATION_PATH}", data=body
            ) as resp:
                ok = resp.status == 204
        except (aiohttp.ClientError, OSError, TimeoutError):
            ok = False
        self.forwards.labels(outcome="ok" if ok else "unreachable").inc()
        return ok

    async def _get(self, index: int, path: str) -> bytes | None:
        """A sibling's answer on its private endpoint; None if it could not be reached."""
        try:
            async with self._clients[index].get(f"http://worker{path}") as resp:
                return await resp.read() if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def scrape(self, index: int) -> str | None:
        body = await self._get(index, METRICS_PATH)
        return body.decode() if body is not None else None

    async def metrics(self, _: web.Request) -> web.Response:
        """``/metrics`` on the edge's port: every worker's series, labelled ``worker``."""
        siblings = self.spec.siblings()
        answers = await asyncio.gather(*(self.scrape(i) for i in siblings))
        parts: dict[int, str | None] = dict(zip(siblings, answers, strict=True))
        parts[self.spec.index] = generate_latest(self.node.metrics.registry).decode()
        body = merge_expositions(
            {str(i): parts[i] for i in sorted(parts)}, "skyrelay_edge_worker_up"
        )
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_parts(self) -> list[dict[str, Any]]:
        """Every reachable sibling's part of the status page (see StatusBoard.local)."""

        async def one(index: int) -> dict[str, Any] | None:
            raw = await self._get(index, STATUS_PATH)
            try:
                body = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                return None
            return body if isinstance(body, dict) else None

        answers = await asyncio.gather(*(one(i) for i in self.spec.siblings()))
        return [a for a in answers if a is not None]

    def identity(self) -> dict[str, object]:
        """What /health and /ready add about this worker."""
        return {"node": self.node.id, "worker": self.spec.index, "pid": os.getpid()}

    async def _emulation(self, request: web.Request) -> web.Response:
        # The forwarding worker checked the body and the origin; 204 as soon as the commands
        # are taken, as for an unknown session (its stream is over). The session's lock keeps
        # its messages in the order they arrive.
        try:
            emulated = parse(await request.read())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        client = self.node.sessions.get(emulated.session)
        if client is not None:
            spawn(client.handle_serialized(emulated.data), name="emulation")
        return web.Response(status=204)

    async def _local_metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.node.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, _: web.Request) -> web.Response:
        if self.status_part is None:
            return web.json_response({"error": "no status here"}, status=404)
        return web.Response(body=orjson.dumps(self.status_part()), content_type="application/json")

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response(self.identity())


MESH_KEY = web.AppKey("mesh", Mesh)
