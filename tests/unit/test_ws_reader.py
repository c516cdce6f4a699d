"""The sans-I/O WebSocket frame reader (no sockets)."""

from __future__ import annotations

import os

import pytest

from skyrelay.edge.ws.reader import FrameReader, Kind, close_frame, unmask
from tests.support.hostile import frame


def test_a_message_split_at_every_byte_comes_out_once_and_whole() -> None:
    data = frame(b'{"id":1}') + frame("é".encode() * 200) + frame(b"x" * 70_000)
    reader = FrameReader(max_message=1 << 20)
    events = [e for i in range(len(data)) for e in reader.feed(data[i : i + 1])]
    assert [e.kind for e in events] == [Kind.TEXT] * 3
    assert events[0].data == '{"id":1}' and events[1].data == "é" * 200
    assert events[2].data == "x" * 70_000


def test_fragments_are_joined_and_control_frames_may_come_between_them() -> None:
    data = frame(b"ab", fin=False) + frame(b"hi", opcode=0x9) + frame(b"cd", opcode=0x0)
    events = FrameReader(1024).feed(data)
    assert [(e.kind, e.data) for e in events] == [(Kind.PING, b"hi"), (Kind.TEXT, "abcd")]


def test_binary_and_close() -> None:
    reader = FrameReader(1024)
    events = reader.feed(frame(b"\x00\xff", opcode=0x2) + frame(b"\x03\xe8bye", opcode=0x8))
    assert [(e.kind, e.data, e.code) for e in events] == [
        (Kind.BINARY, b"\x00\xff", 0),
        (Kind.CLOSE, "bye", 1000),
    ]
    assert reader.feed(frame(b"late")) == []  # nothing is read after a close


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(b"x", masked=False), 1002),
        (frame(b"x", opcode=0x3), 1002),
        (frame(b"x", rsv=0x4), 1002),
        (frame(b"x", opcode=0x0), 1002),
        (frame(b"{", fin=False) + frame(b"}"), 1002),
        (frame(b"p", opcode=0x9, fin=False), 1002),
        (frame(b"p" * 126, opcode=0x9), 1002),
        (frame(b"\x03", opcode=0x8), 1002),
        (frame(b"\x03\xe7", opcode=0x8), 1002),
        (frame(b"\xff\xfe"), 1007),
        (frame(b"\x03\xe8\xff", opcode=0x8), 1007),
        (frame(b"", declared=1 << 40)[:14], 1009),
        (frame(b"a" * 600, fin=False) + frame(b"b" * 600, opcode=0x0)[:20], 1009),
    ],
)
def test_violations_fail_with_their_close_code_before_any_payload_is_buffered(
    data: bytes, code: int
) -> None:
    reader = FrameReader(max_message=1024)
    events = reader.feed(data)
    assert events[-1].kind is Kind.FAIL and events[-1].code == code
    assert reader.feed(frame(b"more")) == []


def test_unmask_matches_the_rfc_definition() -> None:
    mask, payload = os.urandom(4), os.urandom(1001)
    assert unmask(mask, payload) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert close_frame(1000, "x") == b"\x88\x03\x03\xe8x"
