"""The fold of the event log: the events each entry gives, the derived ones (occupied,
vacated, a disconnect's unsubscribes, a gone process's disconnects), and that a fold resumed
from a checkpoint gives exactly what the uninterrupted one gives."""

from __future__ import annotations

from typing import Any

from skyrelay.config.backend import EVENT_TYPES
from skyrelay.origin.event_fold import EventFold, entry_nodes, posted

T = 1_700_000_000_000


def entry(kind: str, seq: int, client: str = "c1", node: str = "n1", **more: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "id": f"{node}.{seq}",
        "node": node,
        "client": client,
        "user": "u",
        "time": T + seq,
        **more,
    }


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e.get("channel", e.get("client", ""))) for e in events]


def fold_all(
    entries: list[dict[str, Any]], fold: EventFold | None = None, first: int = 1
) -> list[dict[str, Any]]:
    fold = fold or EventFold()
    out: list[dict[str, Any]] = []
    for offset, e in enumerate(entries, first):
        out += fold.apply(e, offset)
    return out


LIFE = [
    entry("connect", 1, transport="websocket", channels=["#u"]),
    entry("subscribe", 2, channel="a"),
    entry("connect", 3, client="c2"),
    entry("subscribe", 4, client="c2", channel="a"),
    entry("unsubscribe", 5, channel="a", code=0, reason="unsubscribed"),
    entry("subscribe", 6, channel="b"),
    entry("disconnect", 7, code=3001, reason="shutdown"),
    entry("disconnect", 8, client="c2"),
]


def test_a_life_in_order_with_occupied_and_vacated() -> None:
    events = fold_all(LIFE)
    assert kinds(events) == [
        ("connect", "c1"),
        ("occupied", "#u"),
        ("subscribe", "#u"),
        ("occupied", "a"),
        ("subscribe", "a"),
        ("connect", "c2"),
        ("subscribe", "a"),
        ("unsubscribe", "a"),
        ("occupied", "b"),
        ("subscribe", "b"),
        ("unsubscribe", "#u"),
        ("vacated", "#u"),
        ("unsubscribe", "b"),
        ("vacated", "b"),
        ("disconnect", "c1"),
        ("unsubscribe", "a"),
        ("vacated", "a"),
        ("disconnect", "c2"),
    ]
    assert events[0]["transport"] == "websocket" and events[0]["offset"] == 1
    disconnect = events[14]
    assert (disconnect["code"], disconnect["reason"]) == (3001, "shutdown")
    assert events[12]["code"] == 3001  # a disconnect's unsubscribes carry its code
    assert events[-1]["code"] == 3000 and events[-1]["reason"] == "connection closed"
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)


def test_a_gone_process_owes_every_disconnect_and_its_late_entries_are_ignored() -> None:
    fold = EventFold()
    fold_all(LIFE[:4], fold)
    gone = {"type": "node_gone", "id": "gone:n1", "node": "n1", "time": T + 9}
    events = fold.apply(gone, 5)
    assert kinds(events) == [
        ("unsubscribe", "#u"),
        ("vacated", "#u"),
        ("unsubscribe", "a"),
        ("disconnect", "c1"),
        ("unsubscribe", "a"),
        ("vacated", "a"),
        ("disconnect", "c2"),
    ]
    assert {e["reason"] for e in events if "reason" in e} == {"edge gone"}
    assert fold.apply(entry("subscribe", 10, channel="z"), 6) == []
    assert fold.apply(entry("connect", 11, client="c9"), 7) == []
    assert fold.apply(gone, 8) == []  # reported once
    assert fold.connections == {} and fold.subscribers == {} and fold.nodes == {}


def test_entries_that_do_not_match_the_state_are_skipped() -> None:
    fold = EventFold()
    assert fold.apply(entry("subscribe", 1, channel="a"), 1) == []  # not connected
    assert fold.apply("junk", 2) == []
    assert fold.apply({"type": "connect", "id": 3}, 3) == []
    assert fold.apply(entry("connect", 4, time="soon"), 4) == []
    fold.apply(entry("connect", 5), 5)
    assert fold.apply(entry("connect", 6), 6) == []  # twice
    assert fold.apply(entry("unsubscribe", 7, channel="a"), 7) == []
    assert fold.apply(entry("disconnect", 8, node="n2"), 8) == []  # another process's
    assert fold.apply({"type": "checkpoint", "id": "cp", "cursor": 1, "state": {}}, 9) == []
    assert fold.skipped == 7


def test_resuming_from_a_checkpoint_posts_the_same_events() -> None:
    entries = [*LIFE[:6], {"type": "node_gone", "id": "gone:n1", "node": "n1", "time": T + 20}]
    whole = fold_all(entries)
    for cut in range(len(entries) + 1):
        first = EventFold()
        before = fold_all(entries[:cut], first)
        resumed = EventFold.restore(first.snapshot())
        after = fold_all(entries[cut:], resumed, first=cut + 1)
        assert before + after == whole, cut


def test_entry_nodes() -> None:
    assert entry_nodes(entry("connect", 1)) == ("connect", "n1")
    assert entry_nodes({"type": "node_gone", "node": "n2"}) == ("node_gone", "n2")
    assert entry_nodes({"type": "checkpoint"}) is None
    assert entry_nodes(None) is None


def test_only_the_types_asked_for_are_posted_and_every_type_can_be_asked_for() -> None:
    events = fold_all(LIFE)
    assert {e["type"] for e in events} == set(EVENT_TYPES)
    assert posted(events, ()) == events
    presence = posted(events, ("occupied", "vacated"))
    assert [e["type"] for e in presence] == ["occupied", "occupied", "occupied"] + ["vacated"] * 3
