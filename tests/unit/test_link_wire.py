"""The link wire format between processes: frames, replies and pushes."""

from __future__ import annotations

import pytest

from skyrelay.link import wire


def test_edge_link_frames_round_trip() -> None:
    frame = wire.join_frame([wire.result(1, {}), wire.pub_push("c", "e", {"data": 1})])
    assert wire.decode_frame(frame) == [
        {"id": 1, "result": {}},
        {"push": {"ch": "c", "epoch": "e", "pub": {"data": 1}}},
    ]
    assert wire.decode_frame(wire.error(2, 5000, "x", True, "o1")) == [
        {"id": 2, "error": {"code": 5000, "message": "x", "temporary": True, "leader": "o1"}}
    ]
    with pytest.raises(wire.LinkProtocolError):
        wire.decode_frame(b"{bad")
    with pytest.raises(wire.LinkProtocolError):
        wire.decode_frame(b"[]")


def test_pushes_say_what_happened_to_a_channel() -> None:
    assert wire.decode_frame(wire.pub_push("c", "e", {"offset": 1}, received=2.5)) == [
        {"push": {"ch": "c", "epoch": "e", "pub": {"offset": 1}, "at": 2.5}}
    ]
    assert "at" not in wire.decode_frame(wire.pub_push("c", "e", {}))[0]["push"]
    assert wire.decode_frame(wire.join_push("c", "leave", {"user": "u"})) == [
        {"push": {"ch": "c", "leave": {"info": {"user": "u"}}}}
    ]
    assert wire.decode_frame(wire.moved_push("c", "o2"))[0]["push"]["leader"] == "o2"
    assert "leader" not in wire.decode_frame(wire.moved_push("c", None))[0]["push"]
    assert wire.decode_frame(wire.cleared_push("c")) == [{"push": {"ch": "c", "cleared": True}}]


def test_a_survey_and_its_answers_carry_its_id() -> None:
    asked = wire.decode_frame(wire.survey(7, wire.SURVEY_INFO, {"a": 1}))[0]["survey"]
    assert asked == {"sid": 7, "kind": "info", "params": {"a": 1}}
    assert wire.decode_frame(wire.survey_answer(7, {"n": 2})) == [
        {"answer": {"sid": 7, "result": {"n": 2}}}
    ]
    failed = wire.decode_frame(wire.survey_failure(7, 108, "no"))[0]["answer"]
    assert failed == {"sid": 7, "error": {"code": 108, "message": "no"}}


def test_not_leader_is_a_temporary_error_naming_the_leader() -> None:
    err = wire.not_leader("o1")
    assert err.code == wire.NOT_LEADER and err.temporary
    assert err.leader == "o1"
    # Edges and shards disagree on nothing: every op is in exactly one set.
    assert not wire.EDGE_OPS & wire.PEER_OPS
