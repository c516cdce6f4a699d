"""This edge process's connection and channel events, on their way to the origin's event log.

Events go in the order they happened, in batches, to the shard leading the log; a batch is
sent again (the same ids: the log keeps one copy) until it is in the log, and nothing after it
goes first. A connect or a subscribe is answered only once its event is in the log, so every
connection a client was told about is known to the backend, and its disconnect always
follows. When nothing is queued the process says it is alive, so that the log's leader can
tell a killed process from a quiet one. If the leader reports this process gone (it was
silent too long, cut off), the process drops its clients and speaks again under a new name:
their reconnects are new connections, and the backend's view stays true.

What belongs here: the queue, its order, retries and the alive signal. What never does: what
the events mean (``origin.event_fold``) or when a client's state changes (``edge.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from skyrelay.config.settings import EVENT_LOG_CHANNEL
from skyrelay.edge.router import Router
from skyrelay.link import wire
from skyrelay.protocol.codes import ErrorCode, ReplyError

log = logging.getLogger("skyrelay.edge.events")

# Events per request to the log's leader at most.
SEND_BATCH = 500
# Alive signals per ``events.edge_grace`` while nothing else is sent.
ALIVE_PER_GRACE = 4


class Connected(Protocol):
    @property
    def id(self) -> str: ...  # pragma: no cover

    @property
    def user(self) -> str: ...  # pragma: no cover


@dataclass(slots=True)
class Queued:
    entry: dict[str, Any]
    # Awaited by a connect or subscribe answer; None for events nobody waits on.
    done: asyncio.Future[None] | None


# What a client hears when its connect or subscribe cannot be recorded.
OUT_OF_REACH = "the event log is out of reach"


def temporary(message: str) -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, message, temporary=True)


class EventRecorder:
    def __init__(self, router: Router, on_gone: Callable[[], None]) -> None:
        # The links to the log's leader; their config (kept current by reloads) is ours.
        self.router = router
        self._on_gone = on_gone
        # This process's name in the log; a new one after it was reported gone.
        self.node = _new_node()
        self._seq = 0
        self._queue: deque[Queued] = deque()
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.router.config.events.enabled

    @property
    def full(self) -> bool:
        """No room for a new connection's or subscription's events (the log is out of reach)."""
        return len(self._queue) >= self.router.config.events.edge_queue

    def check_room(self) -> None:
        """A temporary error, before a connection or subscription is made, when its events
        could not be held."""
        if self.full:
            raise temporary(OUT_OF_REACH)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-recorder")

    # Recording.

    def record(
        self, kind: str, conn: Connected, wait: bool = False, **fields: Any
    ) -> asyncio.Future[None] | None:
        """Queue an event; with ``wait``, a future done once it is in the log."""
        if not self.enabled:
            return None
        self._seq += 1
        entry = {
            "type": kind,
            "id": f"{self.node}.{self._seq}",
            "node": self.node,
            "client": conn.id,
            "user": conn.user,
            "time": int(time.time() * 1000),
            **fields,
        }
        done = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append(Queued(entry, done))
        self._emptied.clear()
        self._wake.set()
        return done

    async def confirmed(self, done: asyncio.Future[None] | None) -> None:
        """Wait until a recorded event is in the log; a temporary error if it is not soon."""
        if done is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), self.router.config.edge.upstream_timeout)
        except TimeoutError:
            raise temporary(OUT_OF_REACH) from None

    async def flush(self, within: float) -> bool:
        """Wait until everything queued is in the log (shutting down); False on timeout."""
        if not self._queue or self._task is None:
            return not self._queue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._emptied.wait()
        return not self._queue

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_all(temporary("the edge is stopping"))

    # Sending.

    async def _run(self) -> None:
        alive_every = self.router.config.events.edge_grace / ALIVE_PER_GRACE
        while True:
            if not self._queue:
                self._emptied.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), alive_every)
            batch = [self._queue[i] for i in range(min(SEND_BATCH, len(self._queue)))]
            try:
                await self._send([q.entry for q in batch])
            except asyncio.CancelledError:
                raise
            except ReplyError as exc:
                if exc.code == wire.NODE_GONE:
                    self._gone()
                    continue
                self._failed(batch, exc)
                await asyncio.sleep(self._delay())
                continue
            except Exception as exc:  # a link torn mid-request, say: send the batch again
                self._failed(batch, temporary(f"event log request failed: {exc}"))
                await asyncio.sleep(self._delay())
                continue
            self.failures = 0
            for queued in batch:
                self._queue.popleft()
                if queued.done is not None and not queued.done.done():
                    queued.done.set_result(None)

    async def _send(self, items: list[dict[str, Any]]) -> None:
        params = {"node": self.node, "items": items}
        await self.router.request(EVENT_LOG_CHANNEL, wire.OP_EVENTS, params)

    def _failed(self, batch: list[Queued], error: ReplyError) -> None:
        """The batch stays first in the queue; whoever waits on it is answered now."""
        self.failures += 1
        if self.failures == 1 or self.failures % 50 == 0:
            log.warning("events not in the log yet (%s); retrying", error.message)
        _answer(batch, error)

    def _delay(self) -> float:
        events = self.router.config.events
        return min(events.max_retry_delay, events.retry_delay * 2.0 ** min(self.failures - 1, 16))

    def _gone(self) -> None:
        log.warning("the event log reported this edge process gone: dropping its clients")
        self._on_gone()  # their disconnects are queued under the old name, and dropped
        self._fail_all(temporary("the edge process was reported gone"))
        self.node = _new_node()
        self.failures = 0

    def _fail_all(self, error: ReplyError) -> None:
        queued, self._queue = self._queue, deque()
        _answer(list(queued), error)
        self._emptied.set()


def _answer(batch: list[Queued], error: ReplyError) -> None:
    for queued in batch:
        if queued.done is not None and not queued.done.done():
            queued.done.set_exception(error)
            queued.done.exception()  # retrieved: nobody may be waiting any more


def _new_node() -> str:
    return uuid.uuid4().hex[:16]
