"""The server half of the JSON wire format (``skyrelay.protocol.codec.ServerCodec``): commands
in, replies and pushes out. Pure code: bytes in, bytes out.

A transport message holds one or more JSON documents separated by a single ``\\n``.

What belongs here: JSON bytes and the protocol's messages, both ways, strictly (anything
malformed is a 3501). What never does: a client's state, permissions or channels; those are
``edge.client`` and ``edge.session``.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.protocol.codes import Disconnect, DisconnectCode
from skyrelay.protocol.messages import Command, Pong, command_of

_MAX_ID = 2**32 - 1
# Deepest nesting accepted in publication data. JSON encoders stop at a fixed depth (orjson at
# 255) and every hop wraps the data a few levels deeper, so the edge refuses deep data up front.
MAX_DATA_DEPTH = 64

NAME = "json"
# The server's heartbeat, an empty object; the client's pong is one too.
PING = b"{}"
# Documents of one transport message are separated by a newline.
SEPARATOR = b"\n"


def _bad(reason: str) -> Disconnect:
    return Disconnect(DisconnectCode.BAD_REQUEST, reason)


def decode_command(doc: bytes) -> Command | Pong:
    """Decode one JSON command; raises Disconnect(3501) on anything malformed."""
    try:
        obj = orjson.loads(doc)
    except orjson.JSONDecodeError:
        raise _bad("malformed JSON") from None
    if not isinstance(obj, dict):
        raise _bad("command must be a JSON object")
    cmd_id = obj.get("id", 0)
    if isinstance(cmd_id, bool) or not isinstance(cmd_id, int) or not 0 <= cmd_id <= _MAX_ID:
        raise _bad("id must be an unsigned 32-bit integer")
    return command_of(cmd_id, obj)


def decode_commands(data: bytes | str) -> list[Command | Pong]:
    """Split a transport message into commands, keeping their order."""
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:  # lone surrogates: text that was never valid UTF-8
            raise _bad("message is not valid UTF-8") from None
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise _bad("empty message")
    return [decode_command(line) if line else _raise_empty() for line in data.split(b"\n")]


def _raise_empty() -> Command | Pong:
    raise _bad("empty line")


def data_depth_ok(value: Any, limit: int = MAX_DATA_DEPTH) -> bool:
    """True when ``value`` nests objects and arrays at most ``limit`` deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def encode(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def reply(cmd_id: int, method: str, result: dict[str, Any]) -> bytes:
    """A success reply; the method key is present even when the result is empty."""
    return orjson.dumps({"id": cmd_id, method: result})


def error_reply(cmd_id: int, code: int, message: str, temporary: bool = False) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if temporary:
        error["temporary"] = True
    return orjson.dumps({"id": cmd_id, "error": error})


def push(channel: str, kind: str, body: dict[str, Any]) -> bytes:
    """A push of ``kind`` (join, leave, message...) in ``channel``."""
    return orjson.dumps({"push": {"channel": channel, kind: body}})


def delta_pub(pub: dict[str, Any], data: bytes, delta: bool) -> dict[str, Any]:
    """``pub`` for a delta subscription: its data (JSON, or a patch) as a JSON string."""
    out = {**pub, "data": data.decode()}
    if delta:
        out["delta"] = True
    return out


def pub_push(channel: str, pub: dict[str, Any]) -> bytes:
    return orjson.dumps({"push": {"channel": channel, "pub": pub}})


def unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return orjson.dumps(
        {"push": {"channel": channel, "unsubscribe": {"code": code, "reason": reason}}}
    )


def disconnect_push(code: int, reason: str) -> bytes:
    return orjson.dumps({"push": {"disconnect": {"code": code, "reason": reason}}})
