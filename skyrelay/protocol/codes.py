"""Every number of the Centrifugo client protocol v2: error codes (replies, and the server API),
disconnect codes, unsubscribe codes and subscribe flags, with what each tells a client to do.

Both the edge and the SDK read their codes from here; no protocol number is written anywhere
else. Nothing here knows about sockets, JSON or either side's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112
    CONCURRENT_PAGINATION = 113


ERROR_MESSAGES: dict[int, str] = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
    ErrorCode.CONCURRENT_PAGINATION: "concurrent pagination",
}

# Errors the client may retry as they are.
TEMPORARY_ERRORS = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.CONCURRENT_PAGINATION}
)


class ReplyError(Exception):
    """A command failed with a protocol error code; the connection stays open. The edge raises
    it to answer a command, the SDK to report an answer, and the link for its own errors."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        temporary: bool | None = None,
        *,
        leader: str | None = None,
    ) -> None:
        self.code = int(code)
        self.message = message or ERROR_MESSAGES.get(code, "error")
        self.temporary = code in TEMPORARY_ERRORS if temporary is None else temporary
        # Link errors only: the shard to ask instead.
        self.leader = leader
        super().__init__(f"{self.code}: {self.message}")

    @classmethod
    def from_body(cls, body: Mapping[str, Any], temporary: bool = False) -> ReplyError:
        """The error object of a reply (``{"code", "message", "temporary"?}``), as decoded
        from either wire format; a missing code reads as 100."""
        code = body.get("code", ErrorCode.INTERNAL)
        return cls(
            code if isinstance(code, int) else ErrorCode.INTERNAL,
            str(body.get("message", "")),
            bool(body.get("temporary", temporary)),
        )


def retry_subscribe(error: ReplyError) -> bool:
    """May a failed connect or subscribe be tried again (with backoff)? Temporary errors, and
    an expired token (after fetching a new one)."""
    return error.temporary or error.code == ErrorCode.TOKEN_EXPIRED


class DisconnectCode(IntEnum):
    SHUTDOWN = 3001
    SERVER_ERROR = 3004
    EXPIRED = 3005
    SUB_EXPIRED = 3006
    SLOW = 3008
    WRITE_ERROR = 3009
    INSUFFICIENT_STATE = 3010
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    TOO_MANY_REQUESTS = 3013
    STATE_INVALIDATED = 3014
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    STALE = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CHANNEL_LIMIT = 3505
    INAPPROPRIATE_PROTOCOL = 3506
    PERMISSION_DENIED = 3507
    NOT_AVAILABLE = 3508
    TOO_MANY_ERRORS = 3509


DISCONNECT_REASONS: dict[int, str] = {
    DisconnectCode.SHUTDOWN: "shutdown",
    DisconnectCode.SERVER_ERROR: "internal server error",
    DisconnectCode.EXPIRED: "connection expired",
    DisconnectCode.SUB_EXPIRED: "subscription expired",
    DisconnectCode.SLOW: "slow",
    DisconnectCode.WRITE_ERROR: "write error",
    DisconnectCode.INSUFFICIENT_STATE: "insufficient state",
    DisconnectCode.FORCE_RECONNECT: "force reconnect",
    DisconnectCode.NO_PONG: "no pong",
    DisconnectCode.TOO_MANY_REQUESTS: "too many requests",
    DisconnectCode.STATE_INVALIDATED: "state invalidated",
    DisconnectCode.INVALID_TOKEN: "invalid token",
    DisconnectCode.BAD_REQUEST: "bad request",
    DisconnectCode.STALE: "stale",
    DisconnectCode.FORCE_DISCONNECT: "force disconnect",
    DisconnectCode.CONNECTION_LIMIT: "connection limit",
    DisconnectCode.CHANNEL_LIMIT: "channel limit",
    DisconnectCode.INAPPROPRIATE_PROTOCOL: "inappropriate protocol",
    DisconnectCode.PERMISSION_DENIED: "permission denied",
    DisconnectCode.NOT_AVAILABLE: "not available",
    DisconnectCode.TOO_MANY_ERRORS: "too many errors",
}


class UnsubscribeCode(IntEnum):
    SERVER = 2000
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501
    STATE_INVALIDATED = 2502


def resubscribes(code: int) -> bool:
    """Does a client subscribe again after an unsubscribe push with ``code``?"""
    return code >= UnsubscribeCode.INSUFFICIENT_STATE


class SubscribeFlag(IntEnum):
    """Bits of the subscribe command's ``flag``."""

    # Pushes may name the channel by a number (Skyrelay ignores it, as the protocol allows).
    CHANNEL_COMPACTION = 1
    # Answer error 112 instead of `recovered: false` (SDKs with a getState hook set it).
    REJECT_UNRECOVERED = 2


class Disconnect(Exception):
    """The connection must close with a disconnect code."""

    def __init__(self, code: int, reason: str | None = None):
        self.code = int(code)
        self.reason = (reason or DISCONNECT_REASONS.get(code, "disconnect"))[:123]
        super().__init__(f"{self.code}: {self.reason}")


# WebSocket close codes with a meaning of their own: the connection was lost without a close
# frame (clients reconnect), and a message was too big (clients stop for good).
ABNORMAL_CLOSURE = 1006
MESSAGE_TOO_BIG = 1009
# Never on the wire: a client that closes a healthy connection of its own accord (to move to
# another edge) reports this code.
CLIENT_INTERNAL = 3000


def reconnects(code: int) -> bool:
    """Does a client reconnect after a disconnect (or WebSocket close) with ``code``?"""
    return not (3500 <= code <= 3999 or 4500 <= code <= 4999 or code == MESSAGE_TOO_BIG)
