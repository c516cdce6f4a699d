"""The origin shard process: edge links, health, metrics."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from origin.link import PEERS_KEY, SHARD_KEY, PeerWriter, link_handler
from origin.shard import Shard
from skyrelay import edgelink
from skyrelay.config import ClusterConfig
from skyrelay.metrics import metrics_handler
from skyrelay.serve import serve_until_stopped


class ShardCollector(Collector):
    """Reads the shard's own counters at scrape time, so the hot path counts with plain ints."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        shard = self._app[SHARD_KEY]
        yield CounterMetricFamily(
            "skyrelay_origin_publications",
            "Publications ordered by this shard",
            value=shard.published,
        )
        yield GaugeMetricFamily(
            "skyrelay_origin_channels",
            "Channel streams held by this shard",
            value=len(shard.streams),
        )
        yield GaugeMetricFamily(
            "skyrelay_origin_edge_links", "Edge links connected", value=len(self._app[PEERS_KEY])
        )


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(config: ClusterConfig, shard_id: str) -> web.Application:
    app = web.Application()
    app[SHARD_KEY] = Shard(config, shard_id)
    app[PEERS_KEY] = set[PeerWriter]()
    registry = CollectorRegistry()
    registry.register(ShardCollector(app))
    handler: Handler = metrics_handler(registry)
    app.router.add_get(edgelink.LINK_PATH, link_handler)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", health)
    app.router.add_get("/metrics", handler)
    return app


async def run_origin(config: ClusterConfig, shard_id: str) -> None:
    shard = config.shard(shard_id)
    app = build_app(config, shard_id)
    await serve_until_stopped(app, shard.host, shard.port, backlog=config.origin.listen_backlog)
