"""The storage log's framing: one checksummed frame per record. Pure code: bytes in, bytes out.

A frame is ``length (u32 LE) | crc32 of the body (u32 LE) | body``, the body a JSON object.
Reading stops at the first frame that is cut short (a torn tail: the process died in the middle
of a write) or does not check out (flipped bytes); what comes before it is trusted, nothing
after it is read.

What belongs here: the byte layout and the checks. What never does: files, channels, what a
record means (``origin.storage.records``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

HEADER = struct.Struct("<II")
# Largest body a frame may declare. A length past it is damage, not a record: a snapshot of
# a channel with a full history of the largest messages stays far below it.
MAX_BODY = 256 << 20


def encode(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record)
    return HEADER.pack(len(body), zlib.crc32(body)) + body


@dataclass(frozen=True, slots=True)
class Scan:
    """What a buffer held: the records of its whole frames, where they end, and why reading
    stopped before the end of the buffer (None: it did not)."""

    records: list[dict[str, Any]]
    valid_end: int
    problem: str | None


def decode_all(data: bytes) -> Scan:
    records: list[dict[str, Any]] = []
    position = 0
    size = len(data)
    view = memoryview(data)
    while position < size:
        if size - position < HEADER.size:
            return Scan(records, position, "torn tail: a frame header is cut short")
        length, crc = HEADER.unpack_from(data, position)
        start = position + HEADER.size
        if length > MAX_BODY:
            return Scan(records, position, f"damaged frame: length {length} is past the limit")
        if start + length > size:
            return Scan(records, position, "torn tail: a frame body is cut short")
        body = view[start : start + length]
        if zlib.crc32(body) != crc:
            return Scan(records, position, "damaged frame: checksum mismatch")
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Scan(records, position, "damaged frame: body is not JSON")
        if not isinstance(record, dict):
            return Scan(records, position, "damaged frame: body is not an object")
        records.append(record)
        position = start + length
    return Scan(records, position, None)
