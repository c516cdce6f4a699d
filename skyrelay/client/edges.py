"""Which edge to try next (pure): the fastest by probe round trip, edges that failed or
drained recently last, the configured order breaking ties."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


def edge_base(url: str) -> str:
    """``ws://h:p/connection/websocket`` or ``http://h:p/`` -> ``http://h:p``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.split("/connection/")[0].rstrip("/")
    return urlunsplit((scheme, parts.netloc, path, "", ""))


@dataclass(slots=True)
class EdgeState:
    url: str
    index: int
    rtt: float | None = None  # seconds; None = unknown or unreachable at the last probe
    failed_at: float | None = None


class EdgeRanking:
    def __init__(self, urls: list[str], cooldown: float) -> None:
        if not urls:
            raise ValueError("at least one edge URL is needed")
        bases = list(dict.fromkeys(edge_base(u) for u in urls))
        self.edges = {url: EdgeState(url, i) for i, url in enumerate(bases)}
        self.cooldown = cooldown

    def record_probe(self, url: str, rtt: float | None) -> None:
        self.edges[url].rtt = rtt

    def record_failure(self, url: str, now: float) -> None:
        """The edge failed, or asked its clients to go (3001): try the others first."""
        self.edges[url].failed_at = now

    def record_success(self, url: str) -> None:
        self.edges[url].failed_at = None

    def order(self, now: float) -> list[str]:
        def key(edge: EdgeState) -> tuple[bool, bool, float, int]:
            cooling = edge.failed_at is not None and now - edge.failed_at < self.cooldown
            unknown = edge.rtt is None
            return (cooling, unknown, edge.rtt or 0.0, edge.index)

        return [e.url for e in sorted(self.edges.values(), key=key)]

    def better_than(self, current: str, gain: float) -> str | None:
        """An edge that answers faster than ``current`` by at least ``gain`` seconds."""
        now_rtt = self.edges[current].rtt
        if gain <= 0 or now_rtt is None:
            return None
        best = min(
            (e for e in self.edges.values() if e.rtt is not None and e.failed_at is None),
            key=lambda e: e.rtt or 0.0,
            default=None,
        )
        if best is None or best.url == current or (best.rtt or 0.0) + gain > now_rtt:
            return None
        return best.url
