"""The client half of the JSON wire format (``skyrelay.protocol.codec.ClientCodec``): commands
out, replies and pushes in. Pure code: bytes in, bytes out.

A transport message holds one or more JSON documents separated by a single ``\\n``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from skyrelay.client.errors import ProtocolError
from skyrelay.protocol.codes import ReplyError
from skyrelay.protocol.messages import Ping, Push, Reply

NAME = "json"
# The client's answer to a ping, an empty object (the ping is one too).
PONG = b"{}"

Message = Reply | Push | Ping


def encode(commands: Iterable[dict[str, Any]]) -> bytes:
    """Several commands in one transport message."""
    return b"\n".join(orjson.dumps(c) for c in commands)


def decode(data: bytes | str) -> list[Message]:
    """Every reply, push and ping of one transport message, in order."""
    if isinstance(data, str):
        data = data.encode()
    return [decode_one(line) for line in data.split(b"\n") if line.strip()]


def decode_one(line: bytes) -> Message:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ProtocolError("malformed JSON from the edge") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a reply must be a JSON object")
    push = obj.get("push")
    if isinstance(push, dict):
        channel = str(push.get("channel", ""))
        for kind, body in push.items():
            if kind not in ("channel", "id"):
                return Push(channel, kind, body if isinstance(body, dict) else {})
        raise ProtocolError("push without content")
    reply_id = obj.get("id", 0)
    if not reply_id:
        return Ping()
    if not isinstance(reply_id, int):
        raise ProtocolError("reply id must be an integer")
    error = obj.get("error")
    if isinstance(error, dict):
        return Reply(
            reply_id,
            {},
            ReplyError.from_body(error),
        )
    for key, value in obj.items():
        if key != "id":
            return Reply(reply_id, value if isinstance(value, dict) else {})
    return Reply(reply_id, {})
