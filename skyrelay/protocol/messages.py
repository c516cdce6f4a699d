"""The messages of the client protocol, whatever their wire format: what a client sends
(commands, and its pong) and what a server sends (replies, pushes, and its ping).

A codec turns bytes into these and back; the edge and the SDK reason in these alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyrelay.protocol.codes import Disconnect, DisconnectCode, ReplyError

# Every command method, in the order a decoder looks for them.
METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)


@dataclass(frozen=True, slots=True)
class Command:
    """A client's command: ``id`` 0 only for ``send``."""

    id: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pong:
    """A client's answer to a ping."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer to the command ``id``: its result, or an error."""

    id: int
    result: dict[str, Any]
    error: ReplyError | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """A server's message of its own: ``kind`` is pub, join, leave, unsubscribe, subscribe,
    message, disconnect..., ``body`` its content."""

    channel: str
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ping:
    """A server's heartbeat; answered with a pong when the connect reply asked for it."""


def command_of(cmd_id: int, fields: dict[str, Any]) -> Command | Pong:
    """The command a decoded message holds, whatever its wire format: its first method's
    field (``None`` params read as empty), or a pong when it has neither id nor method.
    Raises Disconnect (3501) as a server answers a malformed command."""
    for method in METHODS:
        if method in fields:
            params = fields[method]
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise Disconnect(DisconnectCode.BAD_REQUEST, f"{method} must be an object")
            if method != "send" and cmd_id == 0:
                raise Disconnect(DisconnectCode.BAD_REQUEST, "command without id")
            return Command(cmd_id, method, params)
    if cmd_id:
        raise Disconnect(DisconnectCode.BAD_REQUEST, "unknown command")
    return Pong()
