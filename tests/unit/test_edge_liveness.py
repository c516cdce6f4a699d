"""Which edge processes are overdue: silent past the grace, from when they were last heard or
from when a new leader started watching them."""

from __future__ import annotations

from skyrelay.origin.edge_liveness import EdgeLiveness


def test_a_process_is_overdue_only_past_the_grace() -> None:
    live = EdgeLiveness(grace=10)
    live.heard("a", 0)
    live.heard("b", 5)
    assert live.overdue(10) == []
    assert live.overdue(10.5) == ["a"]
    live.heard("a", 10.5)
    assert live.overdue(16) == ["b"]
    live.forget("b")
    assert live.overdue(100) == ["a"]


def test_watching_starts_a_full_grace_and_keeps_known_times() -> None:
    live = EdgeLiveness(grace=10)
    live.heard("a", 0)
    live.watch(["a", "b"], 8)
    assert live.overdue(11) == ["a"]
    assert live.overdue(19) == ["a", "b"]
    live.clear()
    assert live.overdue(100) == []
