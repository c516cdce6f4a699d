"""Sans-I/O WebSocket opening handshake (RFC 6455 4.2) for the edge's own WebSocket path.

``parse_upgrade`` accepts only a plain, well-formed upgrade of ``GET /connection/websocket``:
anything else (another path, another method, a body, a header this reader does not expect)
returns None, and the request goes to the HTTP server, which answers it (or upgrades it) as it
answers every other request. Extensions offered (permessage-deflate) are handed on as they
are; ``edge.ws.deflate`` negotiates them.

``wire_format`` picks the client's wire format for both WebSocket paths: protobuf when it
offers the subprotocol ``centrifuge-protobuf`` (or asks ``?cf_protocol=protobuf``), else JSON.
A subprotocol is echoed only when the client offered it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qsl

WEBSOCKET_PATH = b"/connection/websocket"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Header lines a request head may have; past them the HTTP server answers it.
MAX_HEADER_LINES = 100


JSON_SUBPROTOCOL = "centrifuge-json"
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"
# Query parameters that select protobuf without a subprotocol.
FORMAT_PARAMS = ("cf_protocol", "format")


@dataclass(frozen=True, slots=True)
class WireFormat:
    protobuf: bool
    # The subprotocol to echo in the 101 answer, if any.
    subprotocol: str | None


def wire_format(offered: str | None, query: str) -> WireFormat:
    """``offered``: the Sec-WebSocket-Protocol header; ``query``: the target's query string."""
    protocols = [p.strip() for p in offered.split(",")] if offered else []
    if PROTOBUF_SUBPROTOCOL in protocols:
        return WireFormat(True, PROTOBUF_SUBPROTOCOL)
    chosen = JSON_SUBPROTOCOL if JSON_SUBPROTOCOL in protocols else None
    for name, value in parse_qsl(query):
        if name in FORMAT_PARAMS and value == "protobuf":
            return WireFormat(True, None)
    return WireFormat(False, chosen)


@dataclass(frozen=True, slots=True)
class Upgrade:
    key: bytes
    origin: str | None
    format: WireFormat
    # The Sec-WebSocket-Extensions header, if any.
    extensions: str | None = None
    # Every header, by lower-case name (some go on to the app's backend: edge.backend).
    headers: dict[str, str] | None = None


def _tokens(value: bytes) -> set[bytes]:
    return {part.strip().lower() for part in value.split(b",")}


def parse_upgrade(head: bytes) -> Upgrade | None:
    """``head``: the request line and headers, without the blank line that ends them."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    target = parts[1]
    path, _, query = target.partition(b"?")
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
    ):
        return None
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    origin = headers.get(b"origin")
    offered = headers.get(b"sec-websocket-protocol")
    extensions = headers.get(b"sec-websocket-extensions")
    try:
        return Upgrade(
            key,
            origin.decode("ascii") if origin is not None else None,
            wire_format(
                offered.decode("ascii") if offered is not None else None, query.decode("ascii")
            ),
            extensions.decode("ascii") if extensions is not None else None,
            {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()},
        )
    except UnicodeDecodeError:
        return None


def accept_response(
    key: bytes, subprotocol: str | None = None, extensions: str | None = None
) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    chosen = b""
    if subprotocol is not None:
        chosen += b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n"
    if extensions is not None:
        chosen += b"Sec-WebSocket-Extensions: " + extensions.encode() + b"\r\n"
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + chosen + b"\r\n"
    )
