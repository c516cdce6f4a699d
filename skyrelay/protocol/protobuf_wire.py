"""Protobuf's wire encoding, the part every message shares: varints, field keys and
length-delimited framing. Pure code: bytes in, integers and byte ranges out.

What belongs here: reading and writing the encoding, strictly (anything malformed raises
``ProtobufError``, never IndexError or a hang). What never does: which messages exist or what
their fields mean; that is ``protobuf_schema``.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

# The longest varint: 64 bits in groups of 7.
MAX_VARINT_BYTES = 10

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


class ProtobufError(ValueError):
    """Bytes that are not a valid encoding of the message expected."""


class TruncatedVarint(ProtobufError):
    """The data ends inside a varint: malformed in a whole message, not yet arrived in a
    stream."""


def encode_varint(value: int) -> bytes:
    """An unsigned varint; a negative value is written as its 64-bit two's complement."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    if pos < end:
        byte = data[pos]
        if byte < 0x80:
            return byte, pos + 1
    result = 0
    shift = 0
    limit = min(end, pos + MAX_VARINT_BYTES)
    while pos < limit:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> 64:
                raise ProtobufError("varint over 64 bits")
            return result, pos
        shift += 7
    if pos >= end:
        raise TruncatedVarint("truncated varint")
    raise ProtobufError("varint over 10 bytes")


def delimited(payload: bytes) -> bytes:
    """``payload`` after its length as a varint: how messages follow each other in a stream."""
    return encode_varint(len(payload)) + payload


def split_delimited(data: bytes) -> list[bytes]:
    """Every length-delimited message of ``data``, in order."""
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        size, pos = read_varint(data, pos, end)
        stop = pos + size
        if stop > end:
            raise ProtobufError("message length past the end of the data")
        out.append(data[pos:stop])
        pos = stop
    return out


def read_delimited(data: bytes | bytearray, pos: int = 0) -> tuple[bytes, int] | None:
    """The first whole length-delimited message at ``pos`` and the position after it; None
    while the data holds only part of it (a stream that is still arriving)."""
    end = len(data)
    try:
        size, start = read_varint(data, pos, end)
    except TruncatedVarint:
        return None
    if start + size > end:
        return None
    return bytes(data[start : start + size]), start + size


def iter_fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Each field as (number, wire type, value, end of its value).

    For a varint the value is the integer; for a length-delimited field it is where its bytes
    start (they end at the fourth item). Fixed-width fields are skipped over whole; the groups
    of proto2 are refused.
    """
    while pos < end:
        key, pos = read_varint(data, pos, end)
        number = key >> 3
        wire_type = key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(data, pos, end)
            yield number, wire_type, value, pos
        elif wire_type == LEN:
            size, pos = read_varint(data, pos, end)
            stop = pos + size
            if stop > end:
                raise ProtobufError("field length past the end of the message")
            yield number, wire_type, pos, stop
            pos = stop
        elif wire_type in (I64, I32):
            pos += 8 if wire_type == I64 else 4
            if pos > end:
                raise ProtobufError("truncated fixed-width field")
            yield number, wire_type, 0, pos
        else:
            raise ProtobufError(f"unsupported wire type {wire_type}")


def key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)
