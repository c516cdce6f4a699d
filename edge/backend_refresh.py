"""Server-side refresh through the app's backend: when a connection (or a subscription) that
the backend granted reaches its ``expire_at``, the edge asks the refresh (or sub_refresh)
proxy, and the client refreshes nothing itself. A backend that cannot answer gives it
``BACKEND_GRACE`` more, as Centrifugo does.

What belongs here: acting on the backend's answer. What never does: the request and reply
shapes (``edge.proxied``, ``edge.proxy_replies``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from skyrelay.edge import proxied
from skyrelay.edge.proxy_replies import Extension
from skyrelay.edge.session import SessionState
from skyrelay.protocol.codes import Disconnect, DisconnectCode, ReplyError, UnsubscribeCode


class Refreshed(proxied.Caller, Protocol):
    """The connection refreshed (``edge.client.Client``)."""

    info: Any
    expires_at: int
    refreshing: bool
    state: SessionState

    @property
    def subs(self) -> Mapping[str, object | None]: ...  # pragma: no cover

    def close(self, code: int, reason: str | None = None) -> None: ...  # pragma: no cover

    def lost_channel(self, channel: str, code: int, reason: str) -> None: ...  # pragma: no cover

    def set_sub_expiry(self, channel: str, expires_at: int) -> None: ...  # pragma: no cover


# Seconds a connection or subscription is extended when its refresh proxy cannot answer (the
# backend is down): an outage must not end every session at once.
BACKEND_GRACE = 60


async def refresh(client: Refreshed, proxy: str) -> None:
    """The connection's ``expire_at`` came: the app's backend extends it, or it ends."""
    try:
        answer = await _extension(client, proxied.refresh(client, proxy), client.info)
    finally:
        client.refreshing = False
    if answer is None:
        return
    if answer.expired:
        client.close(DisconnectCode.EXPIRED)
        return
    client.expires_at = answer.expire_at
    if answer.info is not None:
        client.info = answer.info


async def sub_refresh(client: Refreshed, proxy: str, channel: str) -> None:
    answer = await _extension(client, proxied.sub_refresh(client, proxy, channel))
    if answer is None or channel not in client.subs or client.state is not SessionState.CONNECTED:
        return
    if answer.expired:
        client.lost_channel(channel, UnsubscribeCode.EXPIRED, "subscription expired")
    elif answer.expire_at:
        client.set_sub_expiry(channel, answer.expire_at)


async def _extension(
    client: Refreshed, asking: Awaitable[Extension], info: Any = None
) -> Extension | None:
    """The backend's answer; ``BACKEND_GRACE`` more when it cannot answer; None once its
    disconnect reply closed the connection."""
    try:
        return await asking
    except ReplyError:
        return Extension(False, int(time.time() + BACKEND_GRACE), info)
    except Disconnect as exc:
        client.close(exc.code, exc.reason)
        return None
