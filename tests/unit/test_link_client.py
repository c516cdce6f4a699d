"""The link client's life cycle with a fake WebSocket: a connection reset while writing
takes the link down and it connects again."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from skyrelay.link.client import LinkClient, LinkSettings
from tests.support.helpers import until


class ResetOnWrite:
    """A WebSocket whose peer resets the connection when the first frame is written: the
    write fails and the reader sees the end at the same time."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    async def send_bytes(self, data: bytes) -> None:
        self.ended.set()
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    def __aiter__(self) -> ResetOnWrite:
        return self

    async def __anext__(self) -> Any:
        await self.ended.wait()
        raise StopAsyncIteration

    async def close(self) -> None:
        self.ended.set()


class Sessions:
    def __init__(self) -> None:
        self.sockets: list[ResetOnWrite] = []

    async def ws_connect(self, url: str, **_: Any) -> ResetOnWrite:
        self.sockets.append(ResetOnWrite())
        return self.sockets[-1]


async def test_a_reset_while_writing_takes_the_link_down_and_it_connects_again() -> None:
    sessions = Sessions()
    downs: list[str] = []
    link = LinkClient(
        "o1",
        "http://o1:1",
        "e0",
        sessions,  # type: ignore[arg-type]
        LinkSettings(request_timeout=1.0, reconnect_delay=0.01),
        lambda *_: None,
        lambda _: None,
        lambda link: downs.append(link.id),
    )
    link.start()
    try:
        await until(lambda: link.is_up, timeout=5, what="the link up")
        pending = link.call("sub", {"ch": "c"})
        await until(lambda: downs == ["o1"], timeout=5, what="the link down")
        assert pending.done() and pending.exception() is not None  # failed at once
        await until(lambda: len(sessions.sockets) >= 2 and link.is_up, timeout=5)
    finally:
        await link.close()
