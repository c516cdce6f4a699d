"""The load of the soak scenario: a paced publisher through the server API, and raw WebSocket
subscribers that follow their position per channel and recover from it when they reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from skyrelay.benchmarks.common import api_publish, bench_token, frames

# Seconds a publication is retried (same idempotency key) before it is given up as not acked.
PUBLISH_DEADLINE = 30.0
# Publications in flight at most: a stalled leader must not pile up tasks without bound.
IN_FLIGHT = 400
# Seconds between retries of a failed publication.
RETRY_PAUSE = 0.05
# Seconds a subscriber waits for a reply to connect or subscribe.
REPLY_TIMEOUT = 15.0


@dataclass
class Slot:
    """One subscription followed across every connection that carries it."""

    channel: str
    # The stream offset at the first subscribe: every acked publication above it is expected.
    start: int | None = None
    epoch: str = ""
    offset: int = 0
    received: set[int] = field(default_factory=set)
    duplicates: int = 0
    recoveries: int = 0
    # Ranges (after, upto] the edge said it could not recover: lost, but not silently.
    unrecovered: list[tuple[int, int]] = field(default_factory=list)

    def deliver(self, pub: dict[str, Any]) -> None:
        offset = pub.get("offset")
        if not isinstance(offset, int):
            return
        if offset in self.received:
            self.duplicates += 1
        else:
            self.received.add(offset)
        self.offset = max(self.offset, offset)

    def subscribe_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": self.channel, "recoverable": True}
        if self.start is not None:
            params.update(recover=True, epoch=self.epoch, offset=self.offset)
        return params

    def subscribed(self, result: dict[str, Any]) -> None:
        for pub in result.get("publications", []):
            self.deliver(pub)
        top = int(result.get("offset", 0))
        if self.start is None:
            self.start = self.offset = top
        elif result.get("recovered"):
            self.recoveries += 1
        else:
            self.unrecovered.append((self.offset, top))
        self.epoch = str(result.get("epoch", ""))
        self.offset = max(self.offset, top)

    def missing(self, acked: set[int]) -> set[int]:
        """Acked offsets this subscription should have and has not."""
        if self.start is None:
            return set()
        start = self.start

        def told(o: int) -> bool:
            return any(after < o <= upto for after, upto in self.unrecovered)

        return {o for o in acked if o > start and o not in self.received and not told(o)}


@dataclass
class Subscriber:
    """A client slot: its subscriptions outlive the connections (churn replaces the connection
    and the new one recovers every channel from where the old one stopped)."""

    name: str
    slots: list[Slot]
    stable: bool
    edge: int = 0
    connections: int = 0
    # Connections lost without being churned (the edge closed it, an error).
    dropped: int = 0
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None
    # Set while churn closes the connection on purpose.
    closing: bool = False

    def ready(self) -> bool:
        return self.ws is not None and not self.ws.closed and self.connections > 0

    async def run(self, session: aiohttp.ClientSession, url: str, until: float) -> None:
        """Stay connected until closed from outside; reconnect (recovering) if dropped."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            try:
                await self._connection(session, url)
                return  # closed by churn or at the end
            except (aiohttp.ClientError, OSError, ConnectionError, TimeoutError, ValueError):
                self.dropped += 1
            await asyncio.sleep(0.2)

    async def _connection(self, session: aiohttp.ClientSession, url: str) -> None:
        ws = await session.ws_connect(url, max_msg_size=0, heartbeat=None)
        self.ws = ws
        try:
            await ws.send_str(json.dumps({"id": 1, "connect": {"token": bench_token()}}))
            waiting = {1: None}
            for i, slot in enumerate(self.slots):
                cmd = {"id": 2 + i, "subscribe": slot.subscribe_params()}
                await ws.send_str(json.dumps(cmd))
                waiting[2 + i] = None
            by_channel = {slot.channel: slot for slot in self.slots}
            # The deadline covers the replies only; then the connection lasts until closed.
            async with asyncio.timeout(REPLY_TIMEOUT) as limit:
                async for obj in frames(ws):
                    self._handle(obj, by_channel, waiting)
                    if not waiting and limit.when() is not None:
                        limit.reschedule(None)
                        self.connections += 1
            if not self.closing:
                raise ConnectionError(f"closed {ws.close_code}")
        finally:
            await ws.close()

    def _handle(
        self, obj: dict[str, Any], by_channel: dict[str, Slot], waiting: dict[int, None]
    ) -> None:
        if "id" in obj:
            cmd_id = int(obj["id"])
            waiting.pop(cmd_id, None)
            if "error" in obj:
                raise ConnectionError(f"reply {cmd_id}: {obj['error']}")
            if "subscribe" in obj:
                self.slots[cmd_id - 2].subscribed(obj["subscribe"])
            return
        push = obj.get("push", {})
        if "pub" in push and push.get("channel") in by_channel:
            by_channel[push["channel"]].deliver(push["pub"])
        elif "unsubscribe" in push or "disconnect" in push:
            # Resubscribing on a fresh connection recovers the channel from its position.
            raise ConnectionError(f"edge asked to leave: {push}")

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.closing = False


@dataclass
class Publisher:
    """Publications at a fixed rate over the channels, each retried with its idempotency key
    until acked or given up; acked offsets are kept per channel."""

    urls: list[str]
    channels: list[str]
    acked: dict[str, dict[int, float]] = field(default_factory=dict)
    epochs: dict[str, set[str]] = field(default_factory=dict)
    sent: int = 0
    retries: int = 0
    given_up: int = 0

    async def run(self, session: aiohttp.ClientSession, rate: float, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        gate = asyncio.Semaphore(IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (due := started + n / rate) < started + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await gate.acquire()
            task = asyncio.ensure_future(self._one(session, n, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=PUBLISH_DEADLINE + 5)

    async def _one(self, session: aiohttp.ClientSession, n: int, gate: asyncio.Semaphore) -> None:
        channel = self.channels[n % len(self.channels)]
        url = self.urls[n % len(self.urls)]
        key = f"soak-{n}"
        deadline = time.monotonic() + PUBLISH_DEADLINE
        self.sent += 1
        try:
            while time.monotonic() < deadline:
                try:
                    answer = await api_publish(session, url, channel, {"n": n}, key)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    answer = {}
                result = answer.get("result")
                if isinstance(result, dict) and isinstance(result.get("offset"), int):
                    self.acked.setdefault(channel, {})[result["offset"]] = time.monotonic()
                    self.epochs.setdefault(channel, set()).add(str(result.get("epoch", "")))
                    return
                self.retries += 1
                await asyncio.sleep(RETRY_PAUSE)
            self.given_up += 1
        finally:
            gate.release()
