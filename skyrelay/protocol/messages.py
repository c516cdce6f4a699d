"""The messages of the client protocol, whatever their wire format: what a client sends
(commands, and its pong) and what a server sends (replies, pushes, and its ping).

A codec turns bytes into these and back; the edge and the SDK reason in these alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyrelay.protocol.codes import ReplyError

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
