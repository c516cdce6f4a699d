"""A subscription as the app holds it: an async iterator of events, in stream order, that
lives across reconnects and edge changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from skyrelay.client.errors import SubscriptionEnded
from skyrelay.client.events import SubscriptionEvent, Unrecovered

log = logging.getLogger("skyrelay.client")


class _End:
    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Subscription:
    """``async for event in sub``: ``Publication``, ``DecryptionFailed`` or ``Unrecovered``.

    The iteration ends when the app unsubscribes or closes the client, and raises
    ``SubscriptionEnded`` when the edge ends the subscription for good."""

    def __init__(
        self,
        channel: str,
        on_consumed: Callable[[str, str, int], None],
        on_unsubscribe: Callable[[str], Any],
        queue_warning: int,
    ) -> None:
        self.channel = channel
        self._queue: asyncio.Queue[SubscriptionEvent | _End] = asyncio.Queue()
        self._on_consumed = on_consumed
        self._on_unsubscribe = on_unsubscribe
        self._queue_warning = queue_warning
        # Position of the event handed out last; it counts as consumed once the app asks for
        # the next one (or closes the client), so a crash in between replays it.
        self._handed: tuple[str, int] | None = None
        self._subscribed = asyncio.Event()
        self.recovered_count = 0
        self.ended: Exception | None = None

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def wait_subscribed(self) -> None:
        """Until the edge confirmed the subscription (now or after a reconnect)."""
        await self._subscribed.wait()

    async def unsubscribe(self) -> None:
        await self._on_unsubscribe(self.channel)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> SubscriptionEvent:
        self.commit()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends too
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        if isinstance(item, Unrecovered) or item.offset:
            self._handed = (item.epoch, item.offset)
        return item

    def commit(self) -> None:
        """The app is done with what it was handed: its position may be saved."""
        if self._handed is not None:
            epoch, offset = self._handed
            self._handed = None
            self._on_consumed(self.channel, epoch, offset)

    # Called by the client.

    def put(self, event: SubscriptionEvent) -> None:
        self._queue.put_nowait(event)
        if self._queue.qsize() == self._queue_warning:
            log.warning("%s: %d events wait for the app", self.channel, self._queue_warning)

    def set_subscribed(self, recovered: bool) -> None:
        if recovered:
            self.recovered_count += 1
        self._subscribed.set()

    def set_unsubscribed(self) -> None:
        self._subscribed.clear()

    def end(self, code: int = 0, reason: str = "", error: Exception | None = None) -> None:
        """No more events: a clean end, the edge's final unsubscribe ``code``, or ``error``."""
        if error is None and code:
            error = SubscriptionEnded(self.channel, code, reason)
        self.ended = error
        self._subscribed.clear()
        self._queue.put_nowait(_End(error))
