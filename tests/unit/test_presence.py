"""Presence at a channel's leader, and which joins and leaves it announces."""

from __future__ import annotations

from skyrelay.origin.presence import Presence


def info(client: str, user: str = "u") -> dict[str, str]:
    return {"client": client, "user": user}


def test_joins_and_leaves_are_announced_only_when_asked() -> None:
    presence = Presence()
    assert presence.add("ch", "edge-a", info("c1", "ann"), announce=True)
    assert not presence.add("ch", "edge-a", info("c1", "ann"), announce=True)  # not new
    assert not presence.add("ch", "edge-a", info("c2", "bob"), announce=False)
    assert presence.stats("ch") == {"num_clients": 2, "num_users": 2}
    assert set(presence.clients("ch")) == {"c1", "c2"}
    assert presence.remove("ch", "c2") is None  # quiet: listed, but no leave
    assert presence.remove("ch", "c1") == info("c1", "ann")
    assert presence.remove("ch", "c1") is None
    assert presence.clients("ch") == {}


def test_an_edge_that_goes_away_takes_its_clients_along() -> None:
    presence = Presence()
    presence.add("a", "edge-1", info("c1"), announce=True)
    presence.add("b", "edge-1", info("c2"), announce=False)
    presence.add("a", "edge-2", info("c3"), announce=True)
    assert presence.drop_edge("edge-1") == [("a", info("c1"))]
    assert set(presence.clients("a")) == {"c3"} and presence.clients("b") == {}
