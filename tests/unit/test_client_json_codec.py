"""The client half of the JSON wire format, without sockets."""

from __future__ import annotations

import orjson
import pytest

from skyrelay.client import json_codec
from skyrelay.client.errors import ProtocolError
from skyrelay.protocol.codes import ReplyError
from skyrelay.protocol.messages import Ping, Push, Reply


def test_commands_go_out_newline_separated_in_order() -> None:
    frame = json_codec.encode([{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "c"}}])
    assert [orjson.loads(line) for line in frame.split(b"\n")] == [
        {"id": 1, "connect": {}},
        {"id": 2, "subscribe": {"channel": "c"}},
    ]
    assert json_codec.PONG == b"{}"


def test_replies_pushes_and_pings_come_in_in_order() -> None:
    frame = (
        b'{"id":1,"connect":{"client":"c"}}\n{}\n'
        b'{"push":{"channel":"chat","pub":{"data":1,"offset":3}}}\n'
        b'{"id":2,"error":{"code":103,"message":"permission denied"}}\n\n'
    )
    *messages, refused = json_codec.decode(frame)
    assert messages == [
        Reply(1, {"client": "c"}),
        Ping(),
        Push("chat", "pub", {"data": 1, "offset": 3}),
    ]
    assert isinstance(refused, Reply) and isinstance(refused.error, ReplyError)
    assert (refused.id, refused.error.code, refused.error.message) == (2, 103, "permission denied")
    assert json_codec.decode('{"id":3,"publish":{}}') == [Reply(3, {})]
    assert json_codec.decode(b'{"push":{"disconnect":{"code":3001}}}') == [
        Push("", "disconnect", {"code": 3001})
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{bad", "malformed JSON"),
        (b"[1]", "JSON object"),
        (b'{"push":{"channel":"c"}}', "push without content"),
        (b'{"id":"1","publish":{}}', "integer"),
    ],
)
def test_what_is_not_the_protocol_is_a_protocol_error(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        json_codec.decode(line)
