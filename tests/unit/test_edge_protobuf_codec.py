"""The server half of the protobuf wire format, without sockets, against Google's runtime."""

from __future__ import annotations

import pytest
from centrifuge.protocol import client_pb2 as pb

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.protocol.codes import Disconnect
from skyrelay.protocol.messages import Command, Pong
from skyrelay.protocol.protobuf_wire import delimited, split_delimited


def frame(*commands: pb.Command) -> bytes:
    return b"".join(delimited(c.SerializeToString()) for c in commands)


def test_batched_commands_keep_their_order() -> None:
    data = frame(
        pb.Command(id=1, connect=pb.ConnectRequest(token="t", name="js")),
        pb.Command(id=2, subscribe=pb.SubscribeRequest(channel="chat", flag=1)),
        pb.Command(),
    )
    assert protobuf_codec.decode_commands(data) == [
        Command(1, "connect", {"token": "t", "name": "js"}),
        Command(2, "subscribe", {"channel": "chat", "flag": 1}),
        Pong(),
    ]


def test_empty_params_and_send() -> None:
    data = frame(
        pb.Command(id=4, presence=pb.PresenceRequest()),
        pb.Command(send=pb.SendRequest(data=b"[1]")),
    )
    assert protobuf_codec.decode_commands(data) == [
        Command(4, "presence", {}),
        Command(0, "send", {"data": [1]}),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        ("text", "text on a protobuf connection"),
        (b"\x05\x08", "past the end"),  # a length past the frame
        (b"\x02\x08\x80", "truncated varint"),
        (b"\x80", "truncated varint"),  # the length itself cut
        (b"\x02\x0a\x00", "wrong wire type"),  # id as bytes
        (b"\x02\x08\x07", "unknown command"),  # an id and no method
        (b"\x04\x08\x07\x5a\x00", "unknown command"),  # the legacy ping
        (b"\x02\x2a\x00", "command without id"),
    ],
)
def test_malformed_frames_are_a_bad_request(data: bytes | str, reason: str) -> None:
    with pytest.raises(Disconnect) as caught:
        protobuf_codec.decode_commands(data)
    assert caught.value.code == 3501
    assert reason in caught.value.reason


def _replies(data: bytes) -> list[pb.Reply]:
    out = []
    for raw in split_delimited(data):
        reply = pb.Reply()
        reply.ParseFromString(raw)
        out.append(reply)
    return out


def test_replies_and_pushes_as_google_reads_them() -> None:
    (ok,) = _replies(protobuf_codec.reply(3, "publish", {}))
    assert ok.id == 3 and ok.HasField("publish")
    (error,) = _replies(protobuf_codec.error_reply(4, 103, "permission denied"))
    assert (error.error.code, error.error.message, error.error.temporary) == (
        103,
        "permission denied",
        False,
    )
    (pub,) = _replies(protobuf_codec.pub_push("chat", {"data": {"t": "ü"}, "offset": 5}))
    assert pub.push.channel == "chat" and pub.push.pub.offset == 5
    assert pub.push.pub.data == '{"t":"ü"}'.encode()
    (gone,) = _replies(protobuf_codec.unsubscribe_push("chat", 2500, "insufficient state"))
    assert (gone.push.unsubscribe.code, gone.push.unsubscribe.reason) == (
        2500,
        "insufficient state",
    )
    (bye,) = _replies(protobuf_codec.disconnect_push(3001, "shutdown"))
    assert bye.push.disconnect.code == 3001
    (joined,) = _replies(
        protobuf_codec.push("chat", "join", {"info": {"user": "u", "client": "c"}})
    )
    assert joined.push.join.info.user == "u"


def test_the_ping_is_an_empty_reply() -> None:
    assert protobuf_codec.PING == b"\x00"
    assert _replies(protobuf_codec.PING) == [pb.Reply()]


def test_both_codecs_carry_the_same_publication() -> None:
    pub = {"data": {"text": "naïve 日本"}, "offset": 9, "tags": {"a": "b"}}
    (theirs,) = _replies(protobuf_codec.pub_push("c", pub))
    json_form = json_codec.pub_push("c", pub)
    assert theirs.push.pub.data.decode() in json_form.decode()
