"""What every process shares of its Prometheus metrics: the latency buckets, and the
``/metrics`` handler that exposes a registry."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# Histogram buckets for request and delivery latencies, in seconds: fine below 10 ms, where a
# healthy cluster lives, coarse up to the replication and upstream timeouts.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
)  # fmt: skip


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def handle(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle
