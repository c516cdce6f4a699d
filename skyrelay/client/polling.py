"""Long-poll as a connection: no socket held, one request at a time carrying the stream
positions, and publications sent in a request of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from skyrelay.client import session as s
from skyrelay.client.settings import ClientSettings
from skyrelay.client.transports import EdgeUnreachable, TransportRefused, longpoll
from skyrelay.protocol.codes import ABNORMAL_CLOSURE, DisconnectCode, ErrorCode, ReplyError


class PolledConnection(Protocol):
    """What long-poll drives of the client's connection (``skyrelay.client.connection``)."""

    session: s.Session
    settings: ClientSettings
    http: aiohttp.ClientSession
    edge: str
    client_id: str
    wake: asyncio.Event
    token: Callable[[bool], Awaitable[str]]

    async def connect_failed(self, error: ReplyError) -> None: ...  # pragma: no cover
    def dispatch(
        self, events: list[s.Event], handshake: bool = False
    ) -> None: ...  # pragma: no cover
    def drop(self, code: int, reason: str) -> None: ...  # pragma: no cover


class ConnectionLost(Exception):
    """The command's connection went away before its reply; try again on the next one."""


class Poller:
    def __init__(self, conn: PolledConnection) -> None:
        self.conn = conn

    async def handshake(self, edge: str) -> None:
        body = await self.body(wait=0)
        try:
            answer = await longpoll(self.conn.http, edge, body, self.conn.settings.connect_timeout)
        except TimeoutError:
            raise EdgeUnreachable("no answer in time") from None
        except ReplyError as exc:
            await self.conn.connect_failed(exc)
            raise EdgeUnreachable(f"long-poll failed: {exc}") from None
        self.conn.session.connected = False
        self.conn.client_id = ""
        self.conn.dispatch(self.conn.session.receive_longpoll(answer))

    async def body(self, wait: float) -> dict[str, Any]:
        return {
            "token": await self.conn.token(False),
            "channels": self.conn.session.longpoll_channels(),
            "timeout": wait,
            "limit": self.conn.settings.longpoll_limit,
        }

    async def run(self, edge: str) -> None:
        limit = self.conn.settings.longpoll_timeout + self.conn.settings.ping_grace
        while True:
            self.conn.wake.clear()
            if not self.conn.session.subs:
                await self.conn.wake.wait()
                continue
            body = await self.body(self.conn.settings.longpoll_timeout)
            poll = asyncio.ensure_future(longpoll(self.conn.http, edge, body, limit))
            woken = asyncio.ensure_future(self.conn.wake.wait())
            try:
                await asyncio.wait((poll, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                if not poll.done():
                    # The subscriptions changed (or the connection ends): the edge keeps
                    # nothing between requests, so a cancelled request loses nothing.
                    poll.cancel()
            if poll.cancelled() or not poll.done():
                await asyncio.gather(poll, return_exceptions=True)
                continue
            try:
                answer = poll.result()
            except (EdgeUnreachable, TransportRefused, TimeoutError) as exc:
                self.conn.drop(ABNORMAL_CLOSURE, f"long-poll failed: {exc}")
                return
            except ReplyError as exc:
                invalid = exc.code == DisconnectCode.INVALID_TOKEN
                self.conn.drop(exc.code if invalid else ABNORMAL_CLOSURE, str(exc))
                return
            self.conn.dispatch(self.conn.session.receive_longpoll(answer))

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method != "publish":
            raise ReplyError(ErrorCode.NOT_AVAILABLE, f"{method} is not available over long-poll")
        body = await self.body(0)
        body["publish"] = [params]
        try:
            answer = await longpoll(
                self.conn.http, self.conn.edge, body, self.conn.settings.command_timeout
            )
        except (EdgeUnreachable, TransportRefused, TimeoutError):
            self.conn.drop(ABNORMAL_CLOSURE, "long-poll publish failed")
            raise ConnectionLost from None
        self.conn.dispatch(self.conn.session.receive_longpoll(answer))
        published = answer.get("published") or []
        if not published:
            raise ConnectionLost
        outcome = published[0]
        error = outcome.get("error")
        if isinstance(error, dict):
            raise ReplyError.from_body(error)
        return dict(outcome)
