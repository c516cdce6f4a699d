"""The edge process: client transports, the server API, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyrelay.config import ClusterConfig, ConfigError, load_config
from skyrelay.edge.api import api_handler
from skyrelay.edge.cache import cache_window
from skyrelay.edge.cors import preflight
from skyrelay.edge.emulation import emulation_handler, http_stream_handler, sse_handler
from skyrelay.edge.httperrors import json_errors
from skyrelay.edge.hub import Hub
from skyrelay.edge.keys import build_verifier
from skyrelay.edge.longpoll import longpoll_handler
from skyrelay.edge.mesh import MESH_KEY, Mesh, WorkerSpec
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.node import NODE_KEY, EdgeNode
from skyrelay.edge.outbox import Flusher
from skyrelay.edge.pg_outbox import PgOutbox
from skyrelay.edge.pinger import PingWheel, run_wheel
from skyrelay.edge.router import Router
from skyrelay.edge.status import StatusBoard
from skyrelay.edge.status_http import add_status_routes
from skyrelay.edge.survey import answer_survey
from skyrelay.edge.uni import uni_sse_handler
from skyrelay.edge.ws.aiohttp_path import CLOSE_TIMEOUT, websocket_handler
from skyrelay.edge.ws.front import front_factory
from skyrelay.protocol.codes import DISCONNECT_REASONS, DisconnectCode
from skyrelay.ring.prober import run_prober
from skyrelay.runtime.metrics import metrics_handler
from skyrelay.runtime.serve import Hooks, Listen, serve_until_stopped
from skyrelay.runtime.tls import server_context, shard_client_ssl

log = logging.getLogger("skyrelay.edge")

# Seconds a stopping edge waits for its WebSocket close handshakes (a client that does not
# answer is dropped after edge.ws.CLOSE_TIMEOUT anyway).
DRAIN_TIMEOUT = CLOSE_TIMEOUT + 0.5
# Seconds a stopping edge waits for its queued events (the drained clients' disconnects) to
# reach the event log.
EVENTS_FLUSH_TIMEOUT = 5.0

SESSION_KEY = web.AppKey("link_session", aiohttp.ClientSession)
TASKS_KEY = web.AppKey("tasks", list[asyncio.Task[None]])
BOARD_KEY = web.AppKey("status_board", StatusBoard)


class EdgeCollector(Collector):
    """Edge state read at scrape time: shard health as this edge sees it, channel moves."""

    def __init__(self, node: EdgeNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "skyrelay_edge_shard_up", "Shard health as this edge sees it (1 up)", labels=["shard"]
        )
        for shard, state in self._node.router.health.snapshot().items():
            up.add_metric([shard], 1.0 if state == "up" else 0.0)
        yield up
        yield CounterMetricFamily(
            "skyrelay_edge_channel_moves",
            "Channels moved to another shard (failover, takeover, ring change)",
            value=self._node.hub.moves,
        )
        yield CounterMetricFamily(
            "skyrelay_edge_fanout_batches",
            "Batches handed to a channel's subscribers (publications / batches: the mean batch)",
            value=self._node.hub.batches.count,
        )
        yield GaugeMetricFamily(
            "skyrelay_edge_connection_limit",
            "Connections this edge process accepts at most (edge.max_connections; 0 = none)",
            value=self._node.config.edge.max_connections,
        )
        yield GaugeMetricFamily(
            "skyrelay_edge_channels",
            "Channels held at this edge",
            value=len(self._node.hub.channels),
        )


def _worker_fields(app: web.Application) -> dict[str, object]:
    mesh = app.get(MESH_KEY)
    return mesh.identity() if mesh is not None else {}


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", **_worker_fields(request.app)})


async def ready(request: web.Request) -> web.Response:
    """Ready when linked to every shard that is up, and one is. A shard that health checks
    call down does not count: its channels are served by their replicas, so a load balancer
    must keep sending clients here during a failover. With workers: this worker's links."""
    node = request.app[NODE_KEY]
    health = node.router.health
    waiting = [i for i, link in node.router.links.items() if not link.is_up and health.is_up(i)]
    down = [i for i in node.router.links if not health.is_up(i)]
    ok = not waiting and len(down) < len(node.router.links)
    body = {"ready": ok, "links_down": waiting, "shards_down": down, **_worker_fields(request.app)}
    return web.json_response(body, status=200 if ok else 503)


async def _sse_or_preflight(request: web.Request) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return await preflight(request)
    return await sse_handler(request)


def add_transport_routes(app: web.Application, transports: tuple[str, ...]) -> None:
    """Routes of the client transports this edge serves; the others are simply absent (404)."""
    served = set(transports)
    preflighted: list[str] = []
    if "websocket" in served:
        app.router.add_get("/connection/websocket", websocket_handler)
    if "http_stream" in served:
        app.router.add_post("/connection/http_stream", http_stream_handler)
        preflighted.append("/connection/http_stream")
    if "sse" in served:
        app.router.add_route("*", "/connection/sse", _sse_or_preflight)
    if served & {"http_stream", "sse"}:
        app.router.add_post("/emulation", emulation_handler)
        preflighted.append("/emulation")
    if "longpoll" in served:
        app.router.add_post("/connection/longpoll", longpoll_handler)
        preflighted.append("/connection/longpoll")
    if "uni_sse" in served:
        app.router.add_route("GET", "/connection/uni_sse", uni_sse_handler)
        app.router.add_route("POST", "/connection/uni_sse", uni_sse_handler)
        preflighted.append("/connection/uni_sse")
    for path in preflighted:
        app.router.add_options(path, preflight)


def build_app(
    config: ClusterConfig, edge_id: str, worker: WorkerSpec | None = None, name: str = ""
) -> web.Application:
    """The edge's app (``worker``: one of several on its port; ``name``: ``--name``)."""
    auth = config.auth
    keys = (auth.rsa_public_key, auth.ecdsa_public_key, auth.ed25519_public_key, auth.jwks_url)
    if not config.token_secret and not any(keys):
        raise ConfigError("token_secret: set SKYRELAY_TOKEN_SECRET to verify client tokens")
    verifier, jwks = build_verifier(config.token_secret, auth)
    app = web.Application(client_max_size=config.edge.api_max_body, middlewares=[json_errors])
    metrics = EdgeMetrics()
    router = Router(config, _links_tls(config, edge_id))
    node: EdgeNode = EdgeNode(
        id=worker.node_id if worker is not None else (name or edge_id),
        config=config,
        verifier=verifier,
        jwks=jwks,
        router=router,
        hub=Hub(
            router,
            metrics,
            config.edge.channel_linger,
            lambda channel: cache_window(node.config, channel),
        ),
        flusher=Flusher(),
        wheel=PingWheel(config.edge.ping_interval, config.edge.pong_timeout),
        metrics=metrics,
    )
    app[NODE_KEY] = node
    if config.edge.insecure:
        log.warning(
            "edge.insecure is on: connections need no token and may subscribe, publish and "
            "read history and presence on every channel. For development only."
        )
    metrics.registry.register(EdgeCollector(node))
    add_transport_routes(app, config.edge.transports)
    app.router.add_post("/api/{method}", api_handler)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    if worker is None:
        app.router.add_get("/metrics", metrics_handler(metrics.registry))
    else:
        mesh = app[MESH_KEY] = Mesh(worker, node)
        app.router.add_get("/metrics", mesh.metrics)
    board = app[BOARD_KEY] = StatusBoard(time.time())
    router.health.watchers.append(
        lambda shard, state: board.record(time.time(), f"shard {state.value}", shard)
    )
    router.health.watchers.append(
        lambda shard, state: metrics.shard_health_changes.labels(shard, state.value).inc()
    )
    worker_mesh = app.get(MESH_KEY)
    if worker_mesh is not None:
        worker_mesh.status_part = lambda: board.local(node, time.time())
    add_status_routes(
        app, node, board, worker_mesh.status_parts if worker_mesh is not None else None
    )
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


def _links_tls(config: ClusterConfig, edge_id: str) -> ssl.SSLContext | bool:
    """How the links verify https:// shards, showing this edge's certificate as its own."""
    own = next((e for e in config.edges if e.id == edge_id), None)
    cert, key = (own.tls_cert, own.tls_key) if own is not None else ("", "")
    return shard_client_ssl(config, cert, key)


async def _start(app: web.Application) -> None:
    node = app[NODE_KEY]
    session = aiohttp.ClientSession()
    app[SESSION_KEY] = session
    node.http = session
    node.backend.http = session
    hub = node.hub
    router = node.router
    router.start_links(
        node.id,
        session,
        hub.on_push,
        hub.on_link_up,
        hub.on_link_down,
        functools.partial(answer_survey, node),
    )

    def urls() -> dict[str, str]:
        return {s.id: s.url for s in node.config.shards}

    node.events.start()
    outbox = node.config.pg_outbox
    app[TASKS_KEY] = [
        *([asyncio.create_task(PgOutbox(node, outbox).run())] if outbox.dsn else []),
        asyncio.create_task(run_wheel(node.wheel, time.time)),
        asyncio.create_task(
            run_prober(
                router.health,
                urls,
                session,
                functools.partial(_health_changed, node),
                router.tls,
            )
        ),
    ]


async def _stop(app: web.Application) -> None:
    for task in app[TASKS_KEY]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    mesh = app.get(MESH_KEY)
    if mesh is not None:
        await mesh.stop()
    node = app[NODE_KEY]
    # The drained clients' disconnects: in the log before the links close, if it can be done
    # in time (else the log's leader reports this process gone after events.edge_grace).
    if not await node.events.flush(EVENTS_FLUSH_TIMEOUT):
        log.warning("stopping with events not in the log; the grace period will report them")
    await node.events.close()
    await node.router.close()
    await app[SESSION_KEY].close()


async def drain(app: web.Application) -> None:
    """Tell every client to reconnect elsewhere, then let the closes go out: WebSockets on
    the edge's own path get until their close handshakes end (at most ``DRAIN_TIMEOUT``)."""
    node = app[NODE_KEY]
    for client in list(node.clients.values()):
        client.close(DisconnectCode.SHUTDOWN)
    for websocket in list(node.websockets):  # those not connected yet, too
        websocket.close(DisconnectCode.SHUTDOWN, DISCONNECT_REASONS[DisconnectCode.SHUTDOWN])
    await asyncio.sleep(0)
    if node.websockets:
        node.websockets_gone.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(node.websockets_gone.wait(), DRAIN_TIMEOUT)


def _health_changed(node: EdgeNode, shard_id: str, up: bool) -> None:
    if not up:
        node.router.shard_down(shard_id)
    node.hub.on_health_change()


def reload(app: web.Application, config: ClusterConfig) -> None:
    """Apply a new config (SIGHUP): new shards are linked, channels follow the new ring."""
    node = app[NODE_KEY]
    node.config = config
    node.router.reconfigure(config)
    node.events.start()  # if [events] was just set
    node.hub.on_health_change()
    app[BOARD_KEY].record(time.time(), "ring reloaded", detail=f"{len(config.shards)} shards")
    log.info("config reloaded: %d shards", len(config.shards))


async def run_edge(
    config_path: str,
    edge_id: str | None = None,
    worker: tuple[int, int, str] | None = None,
    name: str | None = None,
) -> None:
    """Serve one edge; ``worker`` = (index, count, mesh directory) for one of its workers."""
    config = load_config(config_path)
    edge = config.edge_by_id(edge_id)
    entry = f"edges[{config.edges.index(edge)}]"
    tls = server_context(edge.tls_cert, edge.tls_key, entry) if edge.tls_cert else None
    name = name or edge.id
    spec = WorkerSpec(name, worker[0], worker[1], Path(worker[2])) if worker else None
    app = build_app(config, edge.id, spec, name)
    mesh = app.get(MESH_KEY)
    # The edge's own WebSocket path takes plain upgrades; aiohttp serves the rest.
    front = None
    if "websocket" in config.edge.transports:
        front = front_factory(app[NODE_KEY], config.edge.http_header_timeout)
    listen = Listen(
        edge.host,
        edge.port,
        backlog=config.edge.listen_backlog,
        header_timeout=config.edge.http_header_timeout,
        reuse_port=spec is not None,
        ssl_context=tls,
        front=front,
    )
    hooks = Hooks(
        on_listening=mesh.start if mesh is not None else None,
        on_reload=lambda: reload(app, load_config(config_path)),
        on_stop=lambda: drain(app),
        announce=spec is None,
        config_path=config_path,
        watch_interval=config.config_watch_interval,
    )
    await serve_until_stopped(app, listen, hooks)
