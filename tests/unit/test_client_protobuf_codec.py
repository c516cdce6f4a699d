"""The client half of the protobuf wire format, against the server half and Google's runtime."""

from __future__ import annotations

import pytest
from centrifuge.protocol import client_pb2 as pb

from skyrelay.client import protobuf_codec
from skyrelay.client.errors import ProtocolError
from skyrelay.edge import protobuf_codec as server
from skyrelay.protocol.codes import ReplyError
from skyrelay.protocol.messages import Command, Ping, Pong, Push, Reply
from skyrelay.protocol.protobuf_wire import split_delimited


def test_commands_reach_the_server_half_as_sent() -> None:
    data = protobuf_codec.encode(
        [
            {"id": 1, "connect": {"token": "t", "name": "python"}},
            {"id": 2, "publish": {"channel": "c", "data": {"ü": [1, 2]}}},
            {},
        ]
    )
    assert server.decode_commands(data) == [
        Command(1, "connect", {"token": "t", "name": "python"}),
        Command(2, "publish", {"channel": "c", "data": {"ü": [1, 2]}}),
        Pong(),
    ]
    (raw,) = split_delimited(protobuf_codec.encode([{"id": 3, "rpc": {"method": "m"}}]))
    assert pb.Command.FromString(raw).rpc.method == "m"


def test_replies_pushes_and_pings() -> None:
    data = b"".join(
        [
            server.reply(1, "connect", {"client": "c1", "ping": 25, "pong": True}),
            server.error_reply(2, 103, "permission denied", temporary=True),
            server.pub_push("chat", {"data": {"n": 1}, "offset": 4}),
            server.PING,
            server.reply(3, "publish", {}),
        ]
    )
    first, failed, *rest = protobuf_codec.decode(data)
    assert first == Reply(1, {"client": "c1", "ping": 25, "pong": True})
    assert isinstance(failed, Reply) and isinstance(failed.error, ReplyError)
    assert (failed.id, failed.error.code, failed.error.message, failed.error.temporary) == (
        2,
        103,
        "permission denied",
        True,
    )
    assert rest == [Push("chat", "pub", {"data": {"n": 1}, "offset": 4}), Ping(), Reply(3, {})]
    assert protobuf_codec.PONG == b"\x00"


@pytest.mark.parametrize("data", ["text", b"\x05\x08", b"\x02\x0a\x00"])
def test_anything_malformed_is_a_protocol_error(data: bytes | str) -> None:
    with pytest.raises(ProtocolError):
        protobuf_codec.decode(data)
