"""The origin's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.events_posted = Counter(
            "skyrelay_origin_events_posted_total",
            "Events the app's backend acked, by type (as the event log's leader)",
            ["type"],
            registry=r,
        )
        self.events_post_failures = Counter(
            "skyrelay_origin_events_post_failures_total",
            "Event batches the backend did not ack (error status, timeout, unreachable)",
            registry=r,
        )
        self.events_post_seconds = Histogram(
            "skyrelay_origin_events_post_seconds",
            "From posting a batch of events to its ack",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_lost = Counter(
            "skyrelay_origin_events_lost_total",
            "Event log entries dropped before they were delivered (past events.backlog or "
            "events.retention)",
            registry=r,
        )
        self.events_backlog = Gauge(
            "skyrelay_origin_events_backlog",
            "Event log entries not yet acked by the backend (as the log's leader; else 0)",
            registry=r,
        )
