"""Protobuf's wire encoding: varints and length-delimited messages, strictly."""

from __future__ import annotations

import pytest

from skyrelay.protocol.protobuf_wire import (
    ProtobufError,
    delimited,
    encode_varint,
    read_delimited,
    read_varint,
    split_delimited,
)


def test_varints_round_trip() -> None:
    for n in (0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1):
        raw = encode_varint(n)
        assert read_varint(raw, 0, len(raw)) == (n, len(raw))
    assert encode_varint(-1) == b"\xff" * 9 + b"\x01"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x80", "truncated"),
        (b"\xff" * 11, "over 10 bytes"),
        (b"\xff" * 9 + b"\x7f", "over 64 bits"),
    ],
)
def test_bad_varints(raw: bytes, problem: str) -> None:
    with pytest.raises(ProtobufError, match=problem):
        read_varint(raw, 0, len(raw))


def test_delimited_messages() -> None:
    data = delimited(b"a") + delimited(b"") + delimited(b"x" * 300)
    assert split_delimited(data) == [b"a", b"", b"x" * 300]
    assert read_delimited(data[:3]) == (b"a", 2)
    assert read_delimited(data[4:6]) is None  # a length that is still arriving
    with pytest.raises(ProtobufError, match="past the end"):
        split_delimited(b"\x05abc")
