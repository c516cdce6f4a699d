"""Waiting on conditions with deadlines (a process ready, say), and a centrifuge-python event
collector."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Callable

import aiohttp
from centrifuge import (
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


def channel(prefix: str = "") -> str:
    return f"{prefix}t-{uuid.uuid4().hex[:12]}"


class Collector(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.pubs: list[tuple[int, object]] = []
        self.subscribed: list[SubscribedContext] = []
        self.unsubscribed: list[UnsubscribedContext] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx)


async def metric(session: aiohttp.ClientSession, base_url: str, name: str) -> float:
    """One sample of a Prometheus metric without labels."""
    async with session.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"metric {name} not exposed")
    return float(match.group(1))


async def counted(base: str, series: str) -> float:
    """A counter's value so far (0 before a labelled series first appears). A session of its
    own: a WebSocket upgrade on a connection kept alive from this request would go to
    aiohttp's path."""
    async with aiohttp.ClientSession() as session:
        try:
            return await metric(session, base, series)
        except AssertionError:
            return 0.0


async def is_ready(
    session: aiohttp.ClientSession, process: subprocess.Popen[bytes], name: str, url: str
) -> bool:
    """``name`` (a process this test started) still runs and ``url``'s /ready answers 200."""
    assert process.poll() is None, f"{name} exited with code {process.returncode}"
    try:
        async with session.get(f"{url}/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False
