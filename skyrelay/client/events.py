"""What the client hands to the app: publications and the events around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skyrelay.client.errors import DecryptionError


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication, in stream order. ``data`` is already decrypted."""

    channel: str
    offset: int
    data: Any
    epoch: str = ""
    info: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DecryptionFailed:
    """A publication that arrived but could not be opened. Its position still counts, so it
    is not asked for again."""

    channel: str
    offset: int
    error: DecryptionError
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class Unrecovered:
    """The subscription could not continue from its position (history trimmed, or the stream
    was recreated): publications were missed. It goes on from ``offset`` in ``epoch``."""

    channel: str
    epoch: str
    offset: int


# What iterating a subscription yields.
SubscriptionEvent = Publication | DecryptionFailed | Unrecovered


@dataclass(frozen=True, slots=True)
class Connecting:
    """An attempt to reach ``edge`` over ``transport``; ``delay`` is the backoff slept first."""

    edge: str
    transport: str
    attempt: int
    delay: float
    at: float = field(default=0.0)


@dataclass(frozen=True, slots=True)
class Connected:
    edge: str
    transport: str
    client_id: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended; ``reconnect`` says whether the client tries again."""

    edge: str
    code: int
    reason: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """A queued publication was refused for good (permission, unknown channel, bad data) and
    left the outbox."""

    channel: str
    key: str
    error: Exception


ClientEvent = Connecting | Connected | Disconnected | PublishFailed
