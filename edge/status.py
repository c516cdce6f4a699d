"""What the edge's status page shows: one snapshot of this edge and the ring it routes on.

Pure code: the HTTP side (edge/status_http.py) fetches the origins' summaries and hands them in,
so what a snapshot holds is tested without sockets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyrelay.edge.node import EdgeNode

# Events (shard down or up, ring reloads) the page lists, newest first.
RECENT_EVENTS = 50
# Transports a connection can use, in the order the page shows them.
TRANSPORTS = ("websocket", "http_stream", "sse", "uni_sse")


@dataclass(slots=True)
class Rates:
    """Per-second rates from counters sampled at each snapshot."""

    at: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)

    def update(self, now: float, counts: dict[str, float]) -> dict[str, float]:
        elapsed = now - self.at
        rates = {
            name: max(0.0, (value - self.counts.get(name, value)) / elapsed) if elapsed > 0 else 0.0
            for name, value in counts.items()
        }
        self.at, self.counts = now, counts
        return rates


class StatusBoard:
    """The state behind /status: recent events and the rates between snapshots."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.rates = Rates()

    def record(self, at: float, kind: str, shard: str = "", detail: str = "") -> None:
        self.events.appendleft({"at": at, "kind": kind, "shard": shard, "detail": detail})

    def local(self, node: EdgeNode, now: float) -> dict[str, Any]:
        """What this process alone holds; the workers of one edge each answer theirs."""
        sample = node.metrics.registry.get_sample_value
        counts = {
            "deliveries": sample("skyrelay_edge_deliveries_total") or 0.0,
            "publications": sample("skyrelay_edge_publications_total") or 0.0,
            "client_publications": sample("skyrelay_edge_client_publications_total") or 0.0,
        }
        routed: dict[str, int] = {}
        for channel in node.hub.channels.values():
            if channel.link is not None:
                routed[channel.link.id] = routed.get(channel.link.id, 0) + 1
        return {
            "connections": len(node.clients),
            "by_transport": {
                t: int(sample("skyrelay_edge_connections", {"transport": t}) or 0)
                for t in TRANSPORTS
            },
            "subscriptions": sum(
                int(sample("skyrelay_edge_subscriptions", {"transport": t}) or 0)
                for t in TRANSPORTS
            ),
            "channels": len(node.hub.channels),
            "rates": self.rates.update(now, counts),
            "routed": routed,
            "health": node.router.health.snapshot(),
            "events": list(self.events),
        }

    def snapshot(
        self,
        node: EdgeNode,
        now: float,
        origins: dict[str, dict[str, Any] | None],
        siblings: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``origins``: each shard's ``/status?channels=0`` answer, None when unreachable;
        ``siblings``: the other workers' ``local`` parts, when the edge has several."""
        parts = [self.local(node, now), *(siblings or [])]
        return assemble(node, now, now - self.started, parts, origins)


def _shard_rows(
    node: EdgeNode, parts: list[dict[str, Any]], origins: dict[str, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """One row per shard: its ring share, health as these processes see it, what it routes,
    and what its origin says of itself (None where it did not answer)."""
    routed: dict[str, int] = {}
    health: dict[str, str] = {}
    for part in parts:
        for shard_id, count in part["routed"].items():
            routed[shard_id] = routed.get(shard_id, 0) + int(count)
        for shard_id, state in part["health"].items():
            if health.get(shard_id) != "down":
                health[shard_id] = state
    total_weight = sum(s.weight for s in node.config.shards) or 1
    rows = []
    for shard in node.config.shards:
        summary = origins.get(shard.id) or {}
        rows.append(
            {
                "id": shard.id,
                "url": shard.url,
                "weight": shard.weight,
                "share": shard.weight / total_weight,
                "health": health.get(shard.id, "unknown"),
                "reachable": shard.id in origins and origins[shard.id] is not None,
                "routed_channels": routed.get(shard.id, 0),
                **{key: summary.get(key) for key in _SUMMARY_KEYS},
            }
        )
    return rows


# What the page shows of each origin's own summary.
_SUMMARY_KEYS = ("leading", "replicas", "takeovers", "published", "uptime")


def assemble(
    node: EdgeNode,
    now: float,
    uptime: float,
    parts: list[dict[str, Any]],
    origins: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """One edge's snapshot from its processes' parts (the first is the one answering).
    A shard counts as down when any process of the edge sees it down."""
    takeovers = [
        {**event, "shard": shard_id}
        for shard_id, summary in origins.items()
        if summary is not None
        for event in summary.get("recent_takeovers", [])
    ]
    takeovers.sort(key=lambda event: -float(event.get("at", 0)))
    events = sorted(
        (event for part in parts for event in part["events"]), key=lambda e: -float(e["at"])
    )
    shards = _shard_rows(node, parts, origins)
    return {
        "edge": node.id,
        "workers": len(parts),
        "time": now,
        "uptime": round(uptime, 1),
        "replication": node.config.replication,
        "connections": sum(int(p["connections"]) for p in parts),
        "connection_limit": node.config.edge.max_connections * len(parts),
        "by_transport": {
            t: sum(int(p["by_transport"].get(t, 0)) for p in parts) for t in TRANSPORTS
        },
        "subscriptions": sum(int(p["subscriptions"]) for p in parts),
        "channels": sum(int(p["channels"]) for p in parts),
        "rates": {
            name: round(sum(float(p["rates"].get(name, 0.0)) for p in parts), 1)
            for name in parts[0]["rates"]
        },
        "shards": shards,
        "events": events[:RECENT_EVENTS],
        "takeovers": takeovers[:RECENT_EVENTS],
    }
