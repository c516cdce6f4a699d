"""Exceptions of the client. An error reply from the edge is the protocol's own
``ReplyError`` (re-exported here), so the SDK and the server share one class."""

from __future__ import annotations

from skyrelay.protocol.codes import ReplyError

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionRefused",
    "DecryptionError",
    "ProtocolError",
    "ReplyError",
    "SubscriptionEnded",
]


class ClientError(Exception):
    """Base class of every client error."""


class ConnectionRefused(ClientError):
    """The edge closed the connection with a code that forbids reconnecting (3500-3999,
    4500-4999), or refused the token for good. The client stops."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ProtocolError(ClientError):
    """The edge sent something that is not the protocol; the connection is replaced."""


class ClientClosed(ClientError):
    """The client was closed; no more commands."""


class SubscriptionEnded(ClientError):
    """The edge ended a subscription for good (unsubscribe code below 2500, or a final
    subscribe error)."""

    def __init__(self, channel: str, code: int, reason: str) -> None:
        super().__init__(f"{channel}: {code}: {reason}")
        self.channel = channel
        self.code = code
        self.reason = reason


class DecryptionError(ClientError):
    """A publication could not be opened: no key for its kid, wrong key or tampered
    ciphertext, a malformed envelope, or plaintext on an encrypted channel."""

    def __init__(self, channel: str, kid: str | None, reason: str) -> None:
        super().__init__(f"{channel}: {reason}" + (f" (kid {kid})" if kid else ""))
        self.channel = channel
        self.kid = kid
        self.reason = reason
