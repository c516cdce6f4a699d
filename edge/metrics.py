"""The edge's Prometheus metrics: what it counts as it goes (its live state is read at scrape
time by ``edge.app.EdgeCollector``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from skyrelay.runtime.metrics import LATENCY_BUCKETS


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
        self.proxy_requests = Counter(
            "skyrelay_edge_proxy_requests",
            "Calls to the app's backend, by proxy, kind and outcome (ok, error: the backend "
            "refused, disconnect, failed: slow, down or a bad reply, refused: breaker open)",
            ["proxy", "kind", "outcome"],
            registry=r,
        )
        self.proxy_seconds = Histogram(
            "skyrelay_edge_proxy_seconds",
            "Time the app's backend took to answer, by proxy",
            ["proxy"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pg_outbox_rows = Counter(
            "skyrelay_edge_pg_outbox_rows",
            "Rows of the app's PostgreSQL outbox: published (and removed), or refused for good "
            "(logged and removed)",
            ["outcome"],
            registry=r,
        )
        self.websocket_deflate = Counter(
            "skyrelay_edge_websocket_deflate",
            "WebSocket upgrades that agreed on permessage-deflate, by wire format",
            ["format"],
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
