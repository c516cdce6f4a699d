"""Sans-I/O WebSocket opening handshake (RFC 6455 4.2) for the edge's own WebSocket path.

``parse_upgrade`` accepts only a plain, well-formed upgrade of ``GET /connection/websocket``:
anything else (another path, another method, a body, a subprotocol, compression asked for
while it is on, a header this reader does not expect) returns None, and the request goes to
the HTTP server, which answers it (or upgrades it) as it answers every other request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

WEBSOCKET_PATH = b"/connection/websocket"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Header lines a request head may have; past them the HTTP server answers it.
MAX_HEADER_LINES = 100


@dataclass(frozen=True, slots=True)
class Upgrade:
    key: bytes
    origin: str | None


def _tokens(value: bytes) -> set[bytes]:
    return {part.strip().lower() for part in value.split(b",")}


def parse_upgrade(head: bytes, *, compression: bool) -> Upgrade | None:
    """``head``: the request line and headers, without the blank line that ends them."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    target = parts[1]
    path = target.split(b"?", 1)[0]
    if path != WEBSOCKET_PATH or len(lines) > MAX_HEADER_LINES + 1:
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or name.lower() in headers:
            return None
        headers[name.lower()] = value.strip()
    if (
        b"host" not in headers
        or b"websocket" not in _tokens(headers.get(b"upgrade", b""))
        or b"upgrade" not in _tokens(headers.get(b"connection", b""))
        or headers.get(b"sec-websocket-version") != b"13"
        or b"content-length" in headers
        or b"transfer-encoding" in headers
        or b"sec-websocket-protocol" in headers
        or (compression and b"sec-websocket-extensions" in headers)
    ):
        return None
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    origin = headers.get(b"origin")
    try:
        return Upgrade(key, origin.decode("ascii") if origin is not None else None)
    except UnicodeDecodeError:
        return None


def accept_response(key: bytes) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
