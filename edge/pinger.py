"""Server pings for every connection from one timer per edge process (a timing wheel).

Each connection sits in one of ``interval`` one-second slots. Every second the wheel pings the
slot that is due and checks the pongs of the slot pinged ``pong_timeout`` seconds ago: O(n/interval)
work per second, with no timer or task per connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("skyrelay.edge.pinger")


class Pingable(Protocol):
    ping_slot: int

    def ping(self) -> None: ...  # pragma: no cover
    def check_pong(self, now: float) -> None: ...  # pragma: no cover


class PingWheel:
    """Pure bookkeeping; ``tick`` is called once a second by ``run``."""

    def __init__(self, interval: int, pong_timeout: int) -> None:
        if not 0 < pong_timeout < interval:
            raise ValueError("pong_timeout must be between 0 and the ping interval")
        self.interval = interval
        self.pong_timeout = pong_timeout
        self.slots: list[dict[Pingable, None]] = [{} for _ in range(interval)]
        self._next_slot = itertools.cycle(range(interval))
        self.now_tick = 0

    def add(self, conn: Pingable) -> None:
        # Round-robin placement spreads pings evenly; the first ping comes within one interval.
        slot = next(self._next_slot)
        conn.ping_slot = slot
        self.slots[slot][conn] = None

    def remove(self, conn: Pingable) -> None:
        if conn.ping_slot >= 0:
            self.slots[conn.ping_slot].pop(conn, None)
            conn.ping_slot = -1

    def tick(self, now: float) -> None:
        self.now_tick += 1
        due = self.slots[self.now_tick % self.interval]
        for conn in list(due):
            conn.ping()
        check = self.slots[(self.now_tick - self.pong_timeout) % self.interval]
        for conn in list(check):
            conn.check_pong(now)

    def __len__(self) -> int:
        return sum(len(s) for s in self.slots)


async def run_wheel(wheel: PingWheel, clock: Callable[[], float]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        # Sleep to the next whole second since start, so the wheel does not drift.
        ticks = wheel.now_tick + 1
        await asyncio.sleep(max(0.0, start + ticks - loop.time()))
        try:
            wheel.tick(clock())
        except Exception:
            log.exception("ping tick failed")
