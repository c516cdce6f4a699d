"""Publishes waiting for their offset to be committed (held by ``min_copies`` shards), per
channel: woken when the commit reaches them, failed when the shard stops leading."""

from __future__ import annotations

import asyncio


class CommitWaiters:
    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        # channel -> (offset, its publish's future), in the order they were ordered.
        self._waiting: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    async def wait(self, channel: str, offset: int, limit: float) -> bool:
        """Until ``offset`` of ``channel`` commits (True) or ``limit`` seconds pass (False).
        Raises what ``fail`` was given."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, []).append((offset, future))
        try:
            await asyncio.wait_for(future, limit)
        except TimeoutError:
            return False
        return True

    def committed(self, channel: str, committed: int) -> None:
        """The commit of ``channel`` reached ``committed``: wake whoever waits up to it."""
        waiting = self._waiting.get(channel)
        if not waiting:
            return
        still = []
        for offset, future in waiting:
            if offset <= committed:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((offset, future))
        self._waiting[channel] = still

    def fail(self, channel: str, error: Exception) -> None:
        """Every publish waiting on ``channel`` fails with ``error``."""
        for _, future in self._waiting.pop(channel, []):
            if not future.done():
                future.set_exception(error)

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._waiting.values())
