"""The body of ``POST /emulation``: which session of which node, and the commands for it.
Pure code.

centrifuge-js sends it as JSON (``{"session", "node", "data"}``, ``data`` the commands as one
string) or, from its protobuf build, as an ``EmulationRequest`` message (``data`` the
length-delimited commands). The body itself says which: a JSON object starts with ``{``, which
no protobuf message can (it would be field 15 as a proto2 group), whatever ``Content-Type`` a
client library put on it. The commands keep their form, a string for a JSON session and bytes
for a protobuf one, so a body of the wrong format for its session is that session's bad
request (3501), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from skyrelay.protocol.protobuf_message import decode, message
from skyrelay.protocol.protobuf_wire import ProtobufError

PROTOBUF_CONTENT_TYPE = "application/octet-stream"

_REQUEST = message("EmulationRequest")


@dataclass(frozen=True, slots=True)
class EmulationRequest:
    node: str
    session: str
    data: bytes | str


def is_protobuf(content_type: str) -> bool:
    """Does a stream's opening request ask for protobuf?"""
    return content_type.split(";", 1)[0].strip().lower() == PROTOBUF_CONTENT_TYPE


def parse(body: bytes) -> EmulationRequest:
    """The request in ``body``; ValueError naming what is wrong."""
    if not body.lstrip().startswith(b"{"):
        try:
            fields = decode(_REQUEST, body)
        except ProtobufError as exc:
            raise ValueError(f"body is not an EmulationRequest: {exc}") from None
        return EmulationRequest(
            fields.get("node", ""), fields.get("session", ""), fields.get("data", b"")
        )
    try:
        obj = orjson.loads(body)
        session, node, data = obj["session"], obj["node"], obj["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError("body must be {session, node, data} strings") from None
    if not all(isinstance(v, str) for v in (session, node, data)):
        raise ValueError("body must be {session, node, data} strings")
    return EmulationRequest(node, session, data)
