"""The origin's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from skyrelay.runtime.metrics import LATENCY_BUCKETS


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
