"""Error codes shared by the client protocol, the server API and the edge link."""

from __future__ import annotations

from enum import IntEnum


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
    # Edge link only, never sent to clients: ask the shard named in `leader` instead.
    NOT_LEADER = 5000


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
    ErrorCode.NOT_LEADER: "not the leader of this channel",
}

# Errors the client may retry as they are.
TEMPORARY_ERRORS = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.NOT_LEADER}
)


class ReplyError(Exception):
    """A command failed with a protocol error code; the connection stays open."""

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
        # With NOT_LEADER: the shard that serves the channel now.
        self.leader = leader
        super().__init__(f"{self.code}: {self.message}")
