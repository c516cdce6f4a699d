"""The server half of the protobuf wire format (``skyrelay.protocol.codec.ServerCodec``), as
the native SDKs speak it (WebSocket subprotocol ``centrifuge-protobuf``): commands in, replies
and pushes out. Pure code: bytes in, bytes out.

A transport message holds one or more Commands, each after its length as a varint; replies go
out the same way. The server's ping is an empty Reply, the client's pong an empty Command.

What belongs here: protobuf bytes and the protocol's messages, both ways, with the JSON
codec's rules (anything malformed is a 3501). What never does: a client's state, permissions
or channels.
"""

from __future__ import annotations

from typing import Any

from skyrelay.protocol.codes import Disconnect, DisconnectCode
from skyrelay.protocol.messages import Command, Pong, command_of
from skyrelay.protocol.protobuf_message import decode, encode, message
from skyrelay.protocol.protobuf_wire import ProtobufError, delimited, split_delimited

NAME = "protobuf"
# An empty Reply after its zero length.
PING = delimited(b"")
# Each message carries its own length: nothing goes between them.
SEPARATOR = b""

_COMMAND = message("Command")
_REPLY = message("Reply")


def _bad(reason: str) -> Disconnect:
    return Disconnect(DisconnectCode.BAD_REQUEST, reason)


def decode_command(raw: bytes) -> Command | Pong:
    """Decode one Command; raises Disconnect(3501) on anything malformed."""
    try:
        obj = decode(_COMMAND, raw)
    except ProtobufError as exc:
        raise _bad(f"malformed protobuf: {exc}") from None
    return command_of(obj.get("id", 0), obj)


def decode_commands(data: bytes | str) -> list[Command | Pong]:
    """Every Command of a transport message, in order."""
    if isinstance(data, str):
        raise _bad("text on a protobuf connection")
    if not data:
        raise _bad("empty message")
    try:
        raws = split_delimited(data)
    except ProtobufError as exc:
        raise _bad(f"malformed protobuf: {exc}") from None
    return [decode_command(raw) for raw in raws]


def encode_reply(obj: dict[str, Any]) -> bytes:
    """A Reply (or a push inside one) given as the JSON form's dict."""
    return delimited(encode(_REPLY, obj))


def reply(cmd_id: int, method: str, result: dict[str, Any]) -> bytes:
    return encode_reply({"id": cmd_id, method: result})


def error_reply(cmd_id: int, code: int, message: str, temporary: bool = False) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "temporary": temporary}
    return encode_reply({"id": cmd_id, "error": error})


def push(channel: str, kind: str, body: dict[str, Any]) -> bytes:
    """A push of ``kind`` (join, leave, message...) in ``channel``."""
    return encode_reply({"push": {"channel": channel, kind: body}})


def delta_pub(pub: dict[str, Any], data: bytes, delta: bool) -> dict[str, Any]:
    """``pub`` for a delta subscription: its data (JSON, or a patch) as bytes."""
    out = {**pub, "data": data}
    if delta:
        out["delta"] = True
    return out


def pub_push(channel: str, pub: dict[str, Any]) -> bytes:
    return encode_reply({"push": {"channel": channel, "pub": pub}})


def unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return encode_reply(
        {"push": {"channel": channel, "unsubscribe": {"code": code, "reason": reason}}}
    )


def disconnect_push(code: int, reason: str) -> bytes:
    return encode_reply({"push": {"disconnect": {"code": code, "reason": reason}}})
