"""Which edge processes the event log's leader still hears from. Pure code.

Every edge process with events on says it is alive (an empty ``events`` request) a few times
per ``events.edge_grace``; one silent for longer is overdue, and the leader reports it gone
(its clients' unsubscribes and disconnects follow). A new leader knows no times: every process
it finds in the log starts a full grace from its takeover.

What belongs here: last-heard times and the grace rule. What never does: the log, clocks
(callers pass ``now``), or what being gone implies (``origin.event_fold``).
"""

from __future__ import annotations

from collections.abc import Iterable


class EdgeLiveness:
    __slots__ = ("grace", "heard_at")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        # edge process -> when it was last heard from (a monotonic time)
        self.heard_at: dict[str, float] = {}

    def heard(self, node: str, now: float) -> None:
        self.heard_at[node] = now

    def watch(self, nodes: Iterable[str], now: float) -> None:
        """Start watching ``nodes`` not watched yet, as if heard ``now``."""
        for node in nodes:
            self.heard_at.setdefault(node, now)

    def overdue(self, now: float) -> list[str]:
        """Processes silent for longer than the grace, longest first."""
        late = [(at, node) for node, at in self.heard_at.items() if now - at > self.grace]
        return [node for _, node in sorted(late)]

    def forget(self, node: str) -> None:
        self.heard_at.pop(node, None)

    def clear(self) -> None:
        self.heard_at.clear()
