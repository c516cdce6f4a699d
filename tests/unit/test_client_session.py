"""The client's session core without sockets: commands out, replies and pushes in."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from skyrelay.client import session as s
from skyrelay.client.errors import ProtocolError


def frames(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.split(b"\n") if line]


def wire(*docs: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(d) for d in docs)


def connected(*channels: str) -> tuple[s.Session, dict[str, int]]:
    """A session connected with ``channels`` subscribed at epoch "e", offset 5."""
    session = s.Session()
    for ch in channels:
        session.subscribe(ch)
    sent = frames(session.start("tok"))
    ids = {c["subscribe"]["channel"]: c["id"] for c in sent if "subscribe" in c}
    replies = [{"id": sent[0]["id"], "connect": {"client": "c1", "ping": 25, "pong": True}}]
    replies += [
        {"id": i, "subscribe": {"recoverable": True, "positioned": True, "epoch": "e", "offset": 5}}
        for i in ids.values()
    ]
    session.receive(wire(*replies))
    return session, ids


def delivered(events: list[s.Event]) -> list[int]:
    return [e.pub["offset"] for e in events if isinstance(e, s.Deliver)]


def test_start_sends_connect_then_every_subscription_with_its_position() -> None:
    session = s.Session("app")
    session.subscribe("a")
    session.subscribe("b", epoch="x", offset=7)
    sent = frames(session.start("tok"))
    assert sent[0]["connect"] == {"name": "app", "token": "tok"}
    assert sent[1]["subscribe"] == {"channel": "a", "recoverable": True, "flag": 0}
    assert sent[2]["subscribe"] == {
        "channel": "b",
        "recoverable": True,
        "flag": 0,
        "recover": True,
        "offset": 7,
        "epoch": "x",
    }
    assert len({c["id"] for c in sent}) == 3


def test_live_publications_advance_the_position_and_duplicates_are_dropped() -> None:
    session, _ = connected("a")
    pubs = [{"push": {"channel": "a", "pub": {"data": n, "offset": n}}} for n in (6, 6, 5, 7)]
    events = session.receive(wire(*pubs))
    assert delivered(events) == [6, 7]
    assert session.position("a") == ("e", 7)


def test_reconnect_recovers_from_the_last_offset_and_applies_the_missed_publications() -> None:
    session, _ = connected("a")
    session.receive(wire({"push": {"channel": "a", "pub": {"data": 1, "offset": 6}}}))
    assert session.connection_lost() == []
    sent = frames(session.start("tok"))
    assert sent[1]["subscribe"]["recover"] is True
    assert (sent[1]["subscribe"]["offset"], sent[1]["subscribe"]["epoch"]) == (6, "e")
    reply = {
        "id": sent[1]["id"],
        "subscribe": {
            "recoverable": True,
            "positioned": True,
            "was_recovering": True,
            "recovered": True,
            "epoch": "e",
            "offset": 6,
            "publications": [{"data": 7, "offset": 7}, {"data": 8, "offset": 8}],
        },
    }
    events = session.receive(wire({"id": sent[0]["id"], "connect": {"client": "c2"}}, reply))
    assert [type(e) for e in events] == [s.ConnectOk, s.Subscribed, s.Deliver, s.Deliver]
    assert delivered(events) == [7, 8]
    assert session.position("a") == ("e", 8)


def test_failed_recovery_reports_the_loss_and_moves_to_the_new_stream() -> None:
    session, _ = connected("a")
    session.connection_lost()
    sent = frames(session.start("tok"))
    reply = {
        "id": sent[1]["id"],
        "subscribe": {"recoverable": True, "was_recovering": True, "epoch": "f", "offset": 2},
    }
    events = session.receive(wire({"id": sent[0]["id"], "connect": {"client": "c"}}, reply))
    assert s.Lost("a", "f", 2) in events
    assert session.position("a") == ("f", 2)


def test_a_hole_in_the_live_stream_resubscribes_from_the_position() -> None:
    session, _ = connected("a")
    events = session.receive(wire({"push": {"channel": "a", "pub": {"data": 9, "offset": 9}}}))
    assert delivered(events) == []
    sent = frames(session.take_outgoing())
    assert sent[0]["unsubscribe"] == {"channel": "a"}
    assert sent[1]["subscribe"]["offset"] == 5 and sent[1]["subscribe"]["recover"] is True


def test_unsubscribe_push_resubscribes_from_2500_and_ends_below() -> None:
    session, _ = connected("a", "b")
    events = session.receive(
        wire(
            {"push": {"channel": "a", "unsubscribe": {"code": 2500, "reason": "insufficient"}}},
            {"push": {"channel": "b", "unsubscribe": {"code": 2000, "reason": "server"}}},
        )
    )
    assert events == [s.Ended("b", 2000, "server")]
    sent = frames(session.take_outgoing())
    assert [c["subscribe"]["channel"] for c in sent] == ["a"]
    assert "b" not in session.subs


def test_subscribe_errors_retry_when_temporary_and_end_otherwise() -> None:
    session = s.Session()
    session.subscribe("a")
    session.subscribe("b")
    sent = frames(session.start(""))
    assert "token" not in sent[0]["connect"]
    events = session.receive(
        wire(
            {"id": sent[0]["id"], "connect": {"client": "c"}},
            {"id": sent[1]["id"], "error": {"code": 100, "message": "x", "temporary": True}},
            {"id": sent[2]["id"], "error": {"code": 103, "message": "permission denied"}},
        )
    )
    assert isinstance(events[1], s.RetrySubscribe)
    assert events[2] == s.Ended("b", 103, "permission denied")
    session.subscribe_wanted()
    assert frames(session.take_outgoing())[0]["subscribe"]["channel"] == "a"


def test_pings_get_pongs_only_when_asked() -> None:
    session, _ = connected("a")
    session.take_outgoing()
    session.receive(b"{}")
    assert session.take_outgoing() == b"{}"
    quiet = s.Session()
    quiet.receive(b"{}")
    assert quiet.take_outgoing() == b""


def test_publish_is_answered_by_a_done_event_and_lost_with_the_connection() -> None:
    session, _ = connected()
    first = session.publish("a", {"x": 1}, "key-1")
    sent = frames(session.take_outgoing())
    assert sent == [
        {"id": first, "publish": {"channel": "a", "data": {"x": 1}, "idempotency_key": "key-1"}}
    ]
    (done,) = session.receive(wire({"id": first, "publish": {}}))
    assert done == s.Done(first, {}, None)
    second = session.publish("a", {"x": 2})
    assert session.connection_lost() == [second]


def test_subscribing_while_connecting_is_sent_once_connected() -> None:
    session = s.Session()
    connect_id = frames(session.start("tok"))[0]["id"]
    session.subscribe("late")
    assert session.take_outgoing() == b""
    session.receive(wire({"id": connect_id, "connect": {"client": "c"}}))
    assert frames(session.take_outgoing())[0]["subscribe"]["channel"] == "late"


def test_server_disconnect_push_and_malformed_input() -> None:
    session, _ = connected()
    events = session.receive(wire({"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}}))
    assert events == [s.ServerDisconnect(3001, "shutdown")]
    with pytest.raises(ProtocolError):
        session.receive(b"{nope")


def test_long_poll_answers_feed_the_same_positions() -> None:
    session = s.Session()
    session.subscribe("a", epoch="e", offset=3)
    session.subscribe("b")
    assert session.longpoll_channels() == {"a": {"offset": 3, "epoch": "e"}, "b": {}}
    answer = {
        "publications": [
            {"channel": "a", "offset": 3, "data": 0},
            {"channel": "a", "offset": 4, "data": 1},
        ],
        "positions": {"a": {"offset": 4, "epoch": "e"}, "b": {"offset": 9, "epoch": "g"}},
        "unrecovered": [],
    }
    events = session.receive_longpoll(answer)
    assert delivered(events) == [4]
    assert session.position("b") == ("g", 9)
    lost = session.receive_longpoll(
        {"publications": [], "positions": {"a": {"offset": 1, "epoch": "n"}}, "unrecovered": ["a"]}
    )
    assert lost[0] == s.Lost("a", "n", 1)
