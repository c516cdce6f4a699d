"""The edge-link wire format: any frame decodes to messages or raises LinkProtocolError, and
what one side encodes the other decodes unchanged."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay.link import wire
from tests.fuzz.strategies import INT64, json_objects, json_values


@given(st.binary(max_size=300))
@example(b"")
@example(b"\n")
@example(b"{}\n")
@example(b"[" * 5000)
@example(b'{"id":1}\n\xff')
def test_decode_frame_raises_only_link_protocol_error(frame: bytes) -> None:
    try:
        messages = wire.decode_frame(frame)
    except wire.LinkProtocolError:
        return
    assert all(isinstance(m, dict) for m in messages)


@given(st.lists(json_objects, min_size=1, max_size=6))
def test_messages_round_trip(messages: list[dict[str, Any]]) -> None:
    frame = wire.join_frame([wire.encode_message(m) for m in messages])
    assert wire.decode_frame(frame) == messages


@given(
    INT64,
    json_objects,
    st.integers(0, 2**31),
    st.text(),
    st.booleans(),
    st.one_of(st.none(), st.text()),
)
def test_results_and_errors_round_trip(
    req_id: int,
    body: dict[str, Any],
    code: int,
    message: str,
    temporary: bool,
    leader: str | None,
) -> None:
    frame = wire.join_frame(
        [wire.result(req_id, body), wire.error(req_id, code, message, temporary, leader)]
    )
    ok, failed = wire.decode_frame(frame)
    assert ok == {"id": req_id, "result": body}
    error = failed["error"]
    assert (error["code"], error["message"]) == (code, message)
    assert error.get("temporary", False) is temporary
    assert error.get("leader") == leader


@given(st.text(), st.text(), json_objects, st.floats(0, 2e9))
def test_pushes_round_trip(channel: str, epoch: str, pub: dict[str, Any], at: float) -> None:
    (push,) = wire.decode_frame(wire.pub_push(channel, epoch, pub, at))
    assert push["push"]["ch"] == channel and push["push"]["pub"] == pub
    assert push["push"].get("at", 0.0) == at
    (moved,) = wire.decode_frame(wire.moved_push(channel, epoch or None))
    assert moved["push"]["moved"] is True


@given(st.integers(0, 2**32), st.sampled_from(sorted(wire.SURVEY_KINDS)), json_objects)
def test_surveys_round_trip(sid: int, kind: str, params: dict[str, Any]) -> None:
    (survey,) = wire.decode_frame(wire.survey(sid, kind, params))
    assert survey == {"survey": {"sid": sid, "kind": kind, "params": params}}
    (answer,) = wire.decode_frame(wire.survey_answer(sid, params))
    assert answer == {"answer": {"sid": sid, "result": params}}


@given(json_values)
def test_any_value_inside_a_message_survives(value: Any) -> None:
    assert wire.decode_frame(wire.encode_message({"v": value})) == [{"v": value}]
