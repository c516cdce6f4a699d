"""The client's choice of edge: URL normalising and ranking by probes."""

from __future__ import annotations

from skyrelay.client.edges import EdgeRanking, edge_base


def test_edge_urls_are_normalised() -> None:
    assert edge_base("ws://h:1/connection/websocket") == "http://h:1"
    assert edge_base("wss://h/connection/websocket") == "https://h"
    assert edge_base("http://h:1/") == "http://h:1"
    assert edge_base("h:1") == "http://h:1"


def test_ranking_prefers_fast_then_known_then_configured_and_cools_failures() -> None:
    ranking = EdgeRanking(["http://a", "http://b", "http://c"], cooldown=30)
    assert ranking.order(0) == ["http://a", "http://b", "http://c"]
    ranking.record_probe("http://a", None)
    ranking.record_probe("http://b", 0.050)
    ranking.record_probe("http://c", 0.010)
    assert ranking.order(0) == ["http://c", "http://b", "http://a"]
    ranking.record_failure("http://c", now=100)
    assert ranking.order(110) == ["http://b", "http://a", "http://c"]
    assert ranking.order(131) == ["http://c", "http://b", "http://a"]


def test_a_much_faster_edge_is_worth_moving_to() -> None:
    ranking = EdgeRanking(["http://a", "http://b"], cooldown=30)
    ranking.record_probe("http://a", 0.200)
    ranking.record_probe("http://b", 0.020)
    assert ranking.better_than("http://a", gain=0.05) == "http://b"
    assert ranking.better_than("http://a", gain=0.5) is None
    assert ranking.better_than("http://a", gain=0) is None
    assert ranking.better_than("http://b", gain=0.05) is None
