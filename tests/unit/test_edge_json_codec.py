"""The client-protocol codec, without sockets."""

from __future__ import annotations

import orjson
import pytest

from skyrelay.edge import json_codec
from skyrelay.protocol.codes import Disconnect
from skyrelay.protocol.messages import Command, Pong


def test_batched_commands_keep_their_order() -> None:
    frame = b'{"id":1,"connect":{"token":"t","name":"js"}}\n{"id":2,"subscribe":{"channel":"chat","flag":1}}'
    assert json_codec.decode_commands(frame) == [
        Command(1, "connect", {"token": "t", "name": "js"}),
        Command(2, "subscribe", {"channel": "chat", "flag": 1}),
    ]


def test_one_trailing_newline_is_allowed() -> None:
    assert json_codec.decode_commands('{"id":3,"history":{"channel":"a"}}\n') == [
        Command(3, "history", {"channel": "a"})
    ]


def test_empty_object_is_a_pong_and_send_needs_no_id() -> None:
    assert json_codec.decode_commands(b"{}") == [Pong()]
    assert json_codec.decode_commands(b'{"send":{"data":{}}}') == [Command(0, "send", {"data": {}})]


def test_null_params_mean_empty() -> None:
    assert json_codec.decode_commands(b'{"id":4,"presence":null}') == [Command(4, "presence", {})]


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\n",
        b'{"id":1,"connect":{}}\n\n{"id":2,"publish":{}}',
        b"{nope",
        b"[]",
        b'"text"',
        b'{"id":-1,"connect":{}}',
        b'{"id":4294967296,"connect":{}}',
        b'{"id":true,"connect":{}}',
        b'{"id":7,"bogus":{}}',
        b'{"id":7,"ping":{}}',
        b'{"publish":{"channel":"a"}}',
        b'{"id":1,"subscribe":[1]}',
    ],
)
def test_malformed_input_is_a_bad_request_disconnect(frame: bytes) -> None:
    with pytest.raises(Disconnect) as info:
        json_codec.decode_commands(frame)
    assert info.value.code == 3501


def test_success_reply_always_holds_the_method_key() -> None:
    assert orjson.loads(json_codec.reply(3, "publish", {})) == {"id": 3, "publish": {}}
    assert orjson.loads(
        json_codec.reply(1, "connect", {"client": "c", "ping": 25, "pong": True})
    ) == {
        "id": 1,
        "connect": {"client": "c", "ping": 25, "pong": True},
    }


def test_error_reply_always_has_a_message_and_omits_false_temporary() -> None:
    assert orjson.loads(json_codec.error_reply(2, 103, "permission denied")) == {
        "id": 2,
        "error": {"code": 103, "message": "permission denied"},
    }
    assert (
        orjson.loads(json_codec.error_reply(2, 100, "internal", True))["error"]["temporary"] is True
    )


def test_push_shapes() -> None:
    pub = {"data": {"text": "hi"}, "offset": 7}
    assert orjson.loads(json_codec.pub_push("chat", pub)) == {
        "push": {"channel": "chat", "pub": {"data": {"text": "hi"}, "offset": 7}}
    }
    assert orjson.loads(json_codec.unsubscribe_push("chat", 2500, "insufficient state")) == {
        "push": {"channel": "chat", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    }
    assert orjson.loads(json_codec.disconnect_push(3001, "shutdown")) == {
        "push": {"disconnect": {"code": 3001, "reason": "shutdown"}}
    }
    assert json_codec.PING == b"{}"


def test_batched_replies_have_no_empty_lines() -> None:
    out = b"\n".join([json_codec.reply(1, "connect", {"client": "c"}), json_codec.PING])
    assert out == b'{"id":1,"connect":{"client":"c"}}\n{}'
    assert [orjson.loads(line) for line in out.split(b"\n")][1] == {}


def test_data_depth_limit() -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = {"a": [value]} if depth % 2 else [value]
        return value

    assert json_codec.data_depth_ok({"a": [1, {"b": 2}]})
    assert json_codec.data_depth_ok("scalar")
    assert json_codec.data_depth_ok(nested(json_codec.MAX_DATA_DEPTH))
    assert not json_codec.data_depth_ok(nested(json_codec.MAX_DATA_DEPTH + 1))
