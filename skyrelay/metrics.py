"""Prometheus metrics of one process, exposed at ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Histogram buckets for request and delivery latencies, in seconds: fine below 10 ms, where a
# healthy cluster lives, coarse up to the replication and upstream timeouts.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
)  # fmt: skip


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "skyrelay_edge_connections",
            "Client connections open, by transport",
            ["transport"],
            registry=r,
        )
        self.subscriptions = Gauge(
            "skyrelay_edge_subscriptions",
            "Client subscriptions held, by transport",
            ["transport"],
            registry=r,
        )
        self.shard_health_changes = Counter(
            "skyrelay_edge_shard_health_changes",
            "Shards going down (a failover of their channels) or up, as this edge sees them",
            ["shard", "state"],
            registry=r,
        )
        self.upstream_subscriptions = Gauge(
            "skyrelay_edge_upstream_subscriptions",
            "Channels this edge process is subscribed to on their shard (one per channel)",
            registry=r,
        )
        self.upstream_subscribes = Counter(
            "skyrelay_edge_upstream_subscribes",
            "Upstream subscribe requests sent to shards",
            registry=r,
        )
        self.publications = Counter(
            "skyrelay_edge_publications",
            "Publications received from shards for fan-out",
            registry=r,
        )
        self.deliveries = Counter(
            "skyrelay_edge_deliveries", "Publications queued to clients", registry=r
        )
        self.websocket_upgrades = Counter(
            "skyrelay_edge_websocket_upgrades",
            "WebSocket upgrades, by the path that took them (own: the edge's; aiohttp)",
            ["path"],
            registry=r,
        )
        self.disconnects = Counter(
            "skyrelay_edge_disconnects", "Connections closed, by code", ["code"], registry=r
        )
        self.recoveries = Counter(
            "skyrelay_edge_recoveries", "Subscribe recoveries, by outcome", ["outcome"], registry=r
        )
        self.recovery_reads = Counter(
            "skyrelay_edge_recovery_reads",
            "Reads of missed publications, by source (edge hot cache or origin)",
            ["source"],
            registry=r,
        )
        self.command_errors = Counter(
            "skyrelay_edge_command_errors",
            "Client commands answered with an error, by code",
            ["code"],
            registry=r,
        )
        self.client_publications = Counter(
            "skyrelay_edge_client_publications",
            "Publications sent by clients (the publish command)",
            registry=r,
        )
        self.api_seconds = Histogram(
            "skyrelay_edge_api_seconds",
            "Server API request duration, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deliver_seconds = Histogram(
            "skyrelay_edge_deliver_latency_seconds",
            "From the leader taking a publish to this edge queueing it to its subscribers",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.link_reconnects = Counter(
            "skyrelay_edge_link_reconnects",
            "Edge link (re)connections to shards",
            ["shard"],
            registry=r,
        )


class OriginMetrics:
    """What an origin measures as it goes; its state is read at scrape time (ShardCollector)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.publish_seconds = Histogram(
            "skyrelay_origin_publish_seconds",
            "From taking a publish to acking it (replicated to min_copies), as leader",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_errors = Counter(
            "skyrelay_origin_publish_errors",
            "Publishes answered with an error, by code (redirects to the leader not counted)",
            ["code"],
            registry=r,
        )


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def handle(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle
