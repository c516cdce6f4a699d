"""Server-to-client WebSocket frames built once and written to many sockets (RFC 6455 5.2)."""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_RSV1 = 0x40  # permessage-deflate: this message is compressed


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame carrying ``payload`` (already valid UTF-8)."""
    return _frame(_FIN_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    """An unmasked, final binary frame carrying ``payload``."""
    return _frame(_FIN_BINARY, payload)


def compressed_frame(binary: bool, deflated: bytes) -> bytes:
    """A final frame of a message compressed with permessage-deflate."""
    return _frame((_FIN_BINARY if binary else _FIN_TEXT) | _RSV1, deflated)
