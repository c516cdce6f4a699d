"""Error, disconnect and unsubscribe codes of the Centrifugo client protocol v2."""

from __future__ import annotations

from enum import IntEnum

from skyrelay.errors import (
    ERROR_MESSAGES,
    TEMPORARY_ERRORS,
    ErrorCode,
    ReplyError,
)


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


class Disconnect(Exception):
    """The connection must close with a disconnect code."""

    def __init__(self, code: int, reason: str | None = None):
        self.code = int(code)
        self.reason = (reason or DISCONNECT_REASONS.get(code, "disconnect"))[:123]
        super().__init__(f"{self.code}: {self.reason}")


__all__ = [
    "DISCONNECT_REASONS",
    "ERROR_MESSAGES",
    "TEMPORARY_ERRORS",
    "Disconnect",
    "DisconnectCode",
    "ErrorCode",
    "ReplyError",
    "UnsubscribeCode",
]
