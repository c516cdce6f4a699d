"""Sans-I/O reader of client WebSocket frames (RFC 6455 section 5), and the server's own
control frames.

Feed it the bytes from the socket in order; it answers with the events they complete: whole
messages (fragments joined, text checked as UTF-8), pings, pongs, the client's close, or a
protocol failure with the close code to send. The only extension is permessage-deflate, when
negotiated: its first frame of a message has RSV1 set; any other reserved bit is an error.
Nothing is buffered past ``max_message`` bytes: a frame that announces more fails at once,
before its payload arrives, and a compressed message is refused (1009) as soon as it inflates
past the limit.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import Enum

from skyrelay.edge.ws.deflate import Decompressor

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)
# Close codes a peer may send (RFC 6455 7.4.1, and the registered and private ranges).
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


class Kind(Enum):
    TEXT = "text"
    BINARY = "binary"
    PING = "ping"
    PONG = "pong"
    CLOSE = "close"  # the client's close frame: code, reason
    FAIL = "fail"  # a protocol violation: close with code, reason


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind
    data: bytes | str = b""
    code: int = 0


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR with the 4-byte key, as one big-integer operation (fast in CPython)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def close_frame(code: int, reason: str = "") -> bytes:
    body = struct.pack("!H", code) + reason.encode()[:123]
    return bytes((0x88, len(body))) + body


def control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


class FrameReader:
    """Client frames in, events out. After a FAIL or a CLOSE it reads nothing more."""

    __slots__ = (
        "_buffer",
        "_compressed",
        "_fragments",
        "_fragments_op",
        "_fragments_size",
        "decompressor",
        "done",
        "max_message",
    )

    def __init__(self, max_message: int, decompressor: Decompressor | None = None) -> None:
        self.max_message = max_message
        # permessage-deflate, when negotiated.
        self.decompressor = decompressor
        # The message being read was compressed (RSV1 on its first frame).
        self._compressed = False
        self._buffer = b""
        # A fragmented message being put together: its opcode and its parts so far.
        self._fragments_op = 0
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self.done = False

    def feed(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos, end = 0, len(buffer)
        while end - pos >= 2 and not self.done:
            first, second = buffer[pos], buffer[pos + 1]
            head = 2
            size = second & 0x7F
            if size == 126:
                head = 4
            elif size == 127:
                head = 10
            if end - pos < head:
                break
            if head == 4:
                size = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            elif head == 10:
                size = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            failure = self._check_header(first, second, size)
            if failure is not None:
                events.append(failure)
                break
            if end - pos < head + 4 + size:
                break
            mask = buffer[pos + head : pos + head + 4]
            start = pos + head + 4
            payload = unmask(mask, buffer[start : start + size])
            pos = start + size
            if first & 0x40:
                self._compressed = True
            event = self._frame(first & 0x80, first & 0x0F, payload)
            if event is not None:
                events.append(event)
        self._buffer = b"" if self.done else buffer[pos:]
        return events

    def _check_header(self, first: int, second: int, size: int) -> Event | None:
        opcode = first & 0x0F
        if first & 0x70:
            # RSV1 marks a compressed message, on its first frame only.
            compressed = first & 0x70 == 0x40 and self.decompressor is not None
            if not compressed or opcode not in _DATA:
                return self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if opcode not in _DATA and opcode not in _CONTROL and opcode != OP_CONTINUATION:
            return self._fail(CLOSE_PROTOCOL_ERROR, "reserved opcode")
        if not second & 0x80:
            return self._fail(CLOSE_PROTOCOL_ERROR, "unmasked client frame")
        if opcode in _CONTROL:
            if not first & 0x80:
                return self._fail(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if size > 125:
                return self._fail(CLOSE_PROTOCOL_ERROR, "control frame too long")
        elif opcode == OP_CONTINUATION and not self._fragments_op:
            return self._fail(CLOSE_PROTOCOL_ERROR, "continuation without a message")
        elif opcode != OP_CONTINUATION and self._fragments_op:
            return self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        elif self._fragments_size + size > self.max_message:
            return self._fail(CLOSE_TOO_BIG, "message too big")
        return None

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Event(Kind.PING, payload)
        if opcode == OP_PONG:
            return Event(Kind.PONG, payload)
        if opcode == OP_CLOSE:
            return self._close(payload)
        if not fin:
            if opcode != OP_CONTINUATION:
                self._fragments_op = opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return None
        if opcode == OP_CONTINUATION:
            opcode = self._fragments_op
            payload = b"".join((*self._fragments, payload))
            self._fragments_op, self._fragments, self._fragments_size = 0, [], 0
        if self._compressed:
            self._compressed = False
            assert self.decompressor is not None
            try:
                inflated = self.decompressor.decompress(payload)
            except zlib.error:
                return self._fail(CLOSE_BAD_DATA, "invalid compressed message")
            if inflated is None:
                return self._fail(CLOSE_TOO_BIG, "message too big once decompressed")
            payload = inflated
        if opcode == OP_BINARY:
            return Event(Kind.BINARY, payload)
        try:
            return Event(Kind.TEXT, payload.decode("utf-8"))
        except UnicodeDecodeError:
            return self._fail(CLOSE_BAD_DATA, "text message is not UTF-8")

    def _close(self, payload: bytes) -> Event:
        if len(payload) == 1:
            return self._fail(CLOSE_PROTOCOL_ERROR, "close frame of one byte")
        code = int.from_bytes(payload[:2], "big") if payload else CLOSE_NORMAL
        if code not in _VALID_CLOSE and not 3000 <= code <= 4999:
            return self._fail(CLOSE_PROTOCOL_ERROR, "invalid close code")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(CLOSE_BAD_DATA, "close reason is not UTF-8")
        self.done = True
        return Event(Kind.CLOSE, reason, code)

    def _fail(self, code: int, reason: str) -> Event:
        self.done = True
        return Event(Kind.FAIL, reason, code)
