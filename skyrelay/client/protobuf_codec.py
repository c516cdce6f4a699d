"""The client half of the protobuf wire format (``skyrelay.protocol.codec.ClientCodec``):
commands out, replies and pushes in. Pure code: bytes in, bytes out.

A transport message holds one or more messages, each after its length as a varint. Data fields
carry JSON's bytes, so an app sees the same values whichever format its client speaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skyrelay.client.errors import ProtocolError
from skyrelay.protocol.codes import ReplyError
from skyrelay.protocol.messages import Ping, Push, Reply
from skyrelay.protocol.protobuf_message import decode as decode_message
from skyrelay.protocol.protobuf_message import encode as encode_message
from skyrelay.protocol.protobuf_message import message
from skyrelay.protocol.protobuf_wire import ProtobufError, delimited, split_delimited

NAME = "protobuf"
# The client's answer to a ping: an empty Command (the ping is an empty Reply).
PONG = delimited(b"")

Message = Reply | Push | Ping

_COMMAND = message("Command")
_REPLY = message("Reply")


def encode(commands: Iterable[dict[str, Any]]) -> bytes:
    """Several commands in one transport message."""
    return b"".join(delimited(encode_message(_COMMAND, c)) for c in commands)


def decode(data: bytes | str) -> list[Message]:
    """Every reply, push and ping of one transport message, in order."""
    if isinstance(data, str):
        raise ProtocolError("text from the edge on a protobuf connection")
    try:
        return [_one(decode_message(_REPLY, raw)) for raw in split_delimited(data)]
    except ProtobufError as exc:
        raise ProtocolError(f"malformed protobuf from the edge: {exc}") from None


def _one(obj: dict[str, Any]) -> Message:
    push = obj.get("push")
    if push is not None:
        channel = str(push.get("channel", ""))
        for kind, body in push.items():
            if kind not in ("channel", "id"):
                return Push(channel, kind, body)
        raise ProtocolError("push without content")
    reply_id = obj.get("id", 0)
    if not reply_id:
        return Ping()
    error = obj.get("error")
    if error is not None:
        return Reply(reply_id, {}, ReplyError.from_body(error))
    for key, value in obj.items():
        if key != "id":
            return Reply(reply_id, value)
    return Reply(reply_id, {})
