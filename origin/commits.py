"""Publishes waiting for their offset to be committed (held by ``min_copies`` shards), per
channel: woken when the commit reaches them, failed when the shard stops leading, expired past
their deadline.

Waiting costs one future per publish and nothing per commit beyond the publishes it completes:
waiters are kept in offset order per channel, and one timer per shard expires them, instead of
a timer and a task per publish.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque

# Seconds between sweeps for expired waiters while any wait: how late past its deadline a
# publish may learn that it was not committed in time.
SWEEP_EVERY = 0.05

# (offset, deadline in loop time, the publish's future: True when committed, False expired)
Waiter = tuple[int, float, asyncio.Future[bool]]


class CommitWaiters:
    __slots__ = ("_sweeper", "_waiting")

    def __init__(self) -> None:
        self._waiting: dict[str, deque[Waiter]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def wait(self, channel: str, offset: int, limit: float) -> bool:
        """Until ``offset`` of ``channel`` commits (True) or ``limit`` seconds pass (False).
        Raises what ``fail`` was given."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        waiter = (offset, loop.time() + limit, future)
        queue = self._waiting.get(channel)
        if queue is None:
            queue = self._waiting[channel] = deque()
        if queue and queue[-1][0] > offset:  # a retry waiting on an earlier publication
            queue.insert(bisect.bisect_right([w[0] for w in queue], offset), waiter)
        else:
            queue.append(waiter)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)
        return await future

    def committed(self, channel: str, committed: int) -> None:
        """The commit of ``channel`` reached ``committed``: wake whoever waits up to it."""
        queue = self._waiting.get(channel)
        while queue and queue[0][0] <= committed:
            future = queue.popleft()[2]
            if not future.done():
                future.set_result(True)
        if queue is not None and not queue:
            del self._waiting[channel]

    def fail(self, channel: str, error: Exception) -> None:
        """Every publish waiting on ``channel`` fails with ``error``."""
        for _, _, future in self._waiting.pop(channel, ()):
            if not future.done():
                future.set_exception(error)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for channel in list(self._waiting):
            queue = self._waiting[channel]
            kept = deque(w for w in queue if w[1] > now and not w[2].done())
            for _, deadline, future in queue:
                if deadline <= now and not future.done():
                    future.set_result(False)
            if kept:
                self._waiting[channel] = kept
            else:
                del self._waiting[channel]
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep) if self._waiting else None

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())
