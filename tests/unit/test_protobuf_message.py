"""The protobuf codec against Google's protobuf runtime reading the same ``client.proto``
(centrifuge-python ships it generated): what we write they read, and the reverse."""

from __future__ import annotations

from typing import Any

import pytest
from centrifuge.protocol import client_pb2 as pb
from google.protobuf.json_format import MessageToDict, ParseDict

from skyrelay.protocol.protobuf_message import decode, encode, message
from skyrelay.protocol.protobuf_wire import ProtobufError


def _theirs(name: str, raw: bytes) -> dict[str, Any]:
    msg = getattr(pb, name)()
    msg.ParseFromString(raw)
    return MessageToDict(msg, preserving_proto_field_name=True)


def test_a_publication_push_as_google_reads_it() -> None:
    pub = {
        "data": {"text": "héllo", "n": [1, 2]},
        "offset": 2**40,
        "info": {"user": "u", "client": "c", "conn_info": {"a": 1}},
        "tags": {"k": "v"},
        "time": 1_700_000_000_000,
    }
    raw = encode(message("Reply"), {"push": {"channel": "chat", "pub": pub}})
    theirs = _theirs("Reply", raw)["push"]
    assert theirs["channel"] == "chat"
    got = theirs["pub"]
    assert got["offset"] == str(2**40) and got["tags"] == {"k": "v"}
    # bytes fields: base64 in MessageToDict; ours decodes them back to the JSON value
    assert decode(message("Reply"), raw)["push"]["pub"] == pub


def test_every_reply_kind_round_trips() -> None:
    replies: list[dict[str, Any]] = [
        {"id": 1, "connect": {"client": "c1", "version": "1", "ping": 25, "pong": True}},
        {"id": 2, "subscribe": {}},
        {
            "id": 3,
            "subscribe": {
                "recoverable": True,
                "epoch": "e",
                "offset": 7,
                "publications": [{"data": "x", "offset": 7}],
                "recovered": True,
                "was_recovering": True,
                "positioned": True,
            },
        },
        {"id": 4, "error": {"code": 103, "message": "permission denied", "temporary": True}},
        {"id": 5, "presence": {"presence": {"c1": {"user": "u", "client": "c1"}}}},
        {"id": 6, "presence_stats": {"num_clients": 3, "num_users": 2}},
        {"id": 7, "history": {"publications": [{"data": 1, "offset": 1}], "epoch": "e"}},
        {"id": 8, "rpc": {"data": {"ok": True}}},
        {"push": {"channel": "c", "unsubscribe": {"code": 2500, "reason": "x"}}},
        {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}},
        {"push": {"channel": "c", "join": {"info": {"user": "u", "client": "c"}}}},
        {"push": {"message": {"data": [1]}}},
    ]
    for reply in replies:
        raw = encode(message("Reply"), reply)
        assert decode(message("Reply"), raw) == reply
        _theirs("Reply", raw)  # and Google's runtime parses it


def test_an_empty_result_still_names_its_method() -> None:
    raw = encode(message("Reply"), {"id": 2, "publish": {}})
    assert _theirs("Reply", raw) == {"id": 2, "publish": {}}


def test_commands_that_google_writes() -> None:
    command = {
        "id": 9,
        "subscribe": {
            "channel": "news",
            "recover": True,
            "offset": "12",
            "epoch": "ab",
            "delta": "fossil",
            "flag": "1",
        },
    }
    raw = ParseDict(command, pb.Command()).SerializeToString()
    assert decode(message("Command"), raw) == {
        "id": 9,
        "subscribe": {
            "channel": "news",
            "recover": True,
            "offset": 12,
            "epoch": "ab",
            "delta": "fossil",
            "flag": 1,
        },
    }
    publish = pb.Command(id=3, publish=pb.PublishRequest(channel="c", data=b'{"a":1}'))
    assert decode(message("Command"), publish.SerializeToString())["publish"]["data"] == {"a": 1}
    binary = pb.Command(id=3, publish=pb.PublishRequest(channel="c", data=b"\xff\x00"))
    assert decode(message("Command"), binary.SerializeToString())["publish"]["data"] == b"\xff\x00"
    connect = pb.Command(
        id=1,
        connect=pb.ConnectRequest(token="t", headers={"a": "b"}, subs={"s": {"recover": True}}),
    )
    assert decode(message("Command"), connect.SerializeToString()) == {
        "id": 1,
        "connect": {"token": "t", "headers": {"a": "b"}, "subs": {"s": {"recover": True}}},
    }


def test_negative_and_zigzag_numbers() -> None:
    raw = pb.Command(id=1, history=pb.HistoryRequest(channel="c", limit=-1)).SerializeToString()
    assert decode(message("Command"), raw)["history"]["limit"] == -1
    pub = pb.Publication(time=-1)
    assert decode(message("Publication"), pub.SerializeToString()) == {"time": -1}
    assert encode(message("Publication"), {"time": -1}) == pub.SerializeToString()
    # score (sint64) is newer than the generated module: zigzag, so -5 is 9
    raw = encode(message("Publication"), {"score": -5})
    assert raw == b"\x68\x09" and decode(message("Publication"), raw) == {"score": -5}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x08", "truncated"),  # id with no value
        (b"\x2a\x05\x0a\x01", "past the end"),  # subscribe longer than the data
        (b"\x0a\x00", "wrong wire type"),  # id sent as bytes
        (b"\x2a\x03\x0a\x05a", "past the end"),  # a channel longer than its subscribe
        (b"\x2a\x03\x0a\x01\xff", "UTF-8"),
        (b"\x08\x80\x80\x80\x80\x10", "32 bits"),
        (b"\x0b", "wire type 3"),
        (b"\x00", "field number 0"),
        (b"\x09\x00", "truncated fixed"),
    ],
)
def test_malformed_commands(raw: bytes, problem: str) -> None:
    with pytest.raises(ProtobufError, match=problem):
        decode(message("Command"), raw)


def test_unknown_fields_are_skipped() -> None:
    raw = b"\x08\x05" + b"\xa0\x06\x01" + b"\xaa\x06\x02hi" + b"\x2a\x00" + b"\x1d\x00\x00\x00\x00"
    assert decode(message("Command"), raw) == {"id": 5, "subscribe": {}}
