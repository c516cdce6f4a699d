"""The event log at an origin shard: edges append connection and channel events to it, and
the shard that leads it posts them to the app's backend, in order, until each batch is acked.

The log is a replicated channel (``EVENT_LOG_CHANNEL``), so an acked append is as durable as
an acked publication, and its leadership moves like any channel's. Its leader:

- takes the edges' appends (``events`` link requests), and refuses those of a process it
  reported gone, so that process drops its clients instead of speaking for them;
- reports gone an edge process silent for ``events.edge_grace`` (a ``node_gone`` entry);
- folds the log from its cursor (``origin.event_fold``) and posts the events in batches,
  retrying with backoff; the cursor moves only when the backend acked;
- appends a checkpoint (cursor and fold) every ``events.checkpoint_interval`` while the
  cursor moves: a new leader resumes from the newest one and posts again at most what was
  acked since.

What belongs here: leading the log and the dispatch loop. What never does: the fold's rules
(``origin.event_fold``), HTTP details (``origin.event_post``), or how edges queue events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from skyrelay.config.settings import EVENT_LOG_CHANNEL
from skyrelay.link import wire
from skyrelay.link.event_entries import EDGE_KINDS
from skyrelay.origin.edge_liveness import EdgeLiveness
from skyrelay.origin.event_fold import CHECKPOINT, NODE_GONE, EventFold, entry_nodes, posted
from skyrelay.origin.event_post import EventPoster
from skyrelay.origin.metrics import OriginMetrics
from skyrelay.origin.publishing import Proposal, publish_all
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator
from skyrelay.protocol.codes import ErrorCode, ReplyError

log = logging.getLogger("skyrelay.origin.events")

# Seconds between looks at who leads the log, when nothing wakes the loop sooner.
IDLE_POLL = 0.5
# Log entries folded per step (a step posts at most ``batch_size`` events).
READ_STEP = 1000
# A checkpoint waits until the entries acked since the last one, times this, reach the open
# connections it holds (one row each, about an entry's size).
CHECKPOINT_SHARE = 4


def node_gone_error() -> ReplyError:
    return ReplyError(wire.NODE_GONE, "this edge process was reported gone; drop its clients")


class EventLog:
    """One shard's part in the event log: appends while it leads, and the dispatcher."""

    def __init__(self, replicator: Replicator, metrics: OriginMetrics) -> None:
        # The shard's replication; its config (kept current by reloads) is ours.
        self.replicator = replicator
        self.metrics = metrics
        self.liveness = EdgeLiveness(replicator.config.events.edge_grace)
        # Processes reported gone at the log's head: their appends are refused.
        self.gone: set[str] = set()
        self.poster = EventPoster(metrics)
        # The leadership term the state below belongs to; None = not loaded.
        self.term: int | None = None
        self.fold = EventFold()
        self.cursor = 0  # the last log offset whose events the backend acked
        # Events folded past the cursor and not acked yet, and the offset they end at.
        self.carry: list[dict[str, Any]] = []
        self.carry_end = 0
        # Entries whose events were acked since the last checkpoint (entries that post
        # nothing, checkpoints among them, never call for one), and when it was written.
        self.acked_since_checkpoint = 0
        self.checkpoint_at = time.monotonic()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.replicator.config.events.enabled

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.poster.close()

    def wake(self) -> None:
        """New entries committed (or something else worth a look)."""
        self._wake.set()

    # Appends, from the edges.

    async def append(self, node: Any, items: Any) -> dict[str, Any]:
        """An edge process's events, in the log once this returns; none = it is alive."""
        if not self.enabled:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, "events are off in this cluster")
        if not isinstance(node, str) or not node:
            raise ReplyError(ErrorCode.BAD_REQUEST, "node must be a non-empty string")
        proposals = [_proposal(item) for item in _items(items)]
        rep = await self.replicator.lead(EVENT_LOG_CHANNEL)
        self._load(rep)
        if node in self.gone:
            raise node_gone_error()
        self.liveness.heard(node, time.monotonic())
        if proposals:
            _, outcomes = await publish_all(
                self.replicator, EVENT_LOG_CHANNEL, proposals, time.time()
            )
            for outcome in outcomes:
                if isinstance(outcome, ReplyError):
                    raise outcome
        return {}

    # Leading: state from the log.

    def _load(self, rep: ChannelReplica) -> None:
        """Take up the log at a new term: the newest checkpoint, and every process that has
        clients or entries since, watched from now."""
        if self.term == rep.term:
            return
        self.term = rep.term
        stream = rep.stream
        assert stream is not None
        held = stream.held()
        self.fold, self.cursor = EventFold(), 0
        for pub in reversed(held):
            data = pub.data
            if isinstance(data, dict) and data.get("type") == CHECKPOINT:
                try:
                    self.fold = EventFold.restore(data.get("state"))
                    self.cursor = int(data["cursor"])
                except (KeyError, TypeError, ValueError):
                    log.warning("event log checkpoint at %d is malformed; skipped", pub.offset)
                    continue
                break
        self.carry, self.carry_end = [], self.cursor
        self.acked_since_checkpoint = 0
        self.checkpoint_at = time.monotonic()
        self.gone = set(self.fold.gone)
        watched = set(self.fold.nodes)
        for pub in held:
            if pub.offset <= self.cursor:
                continue
            found = entry_nodes(pub.data)
            if found is not None:
                (self.gone if found[0] == NODE_GONE else watched).add(found[1])
        self.liveness.clear()
        self.liveness.watch(watched - self.gone, time.monotonic())
        log.info(
            "leading the event log at term %d: resuming after offset %d of %d",
            rep.term,
            self.cursor,
            stream.committed,
        )

    def _leading(self) -> ChannelReplica | None:
        rep = self.replicator.replicas.get(EVENT_LOG_CHANNEL)
        if rep is None or not rep.is_leader or rep.stream is None:
            if self.term is not None:
                self.term = None
                self.metrics.events_backlog.set(0)
            return None
        return rep

    # The dispatch loop.

    async def _run(self) -> None:
        while True:
            try:
                busy = await self._step()
            except asyncio.CancelledError:
                raise
            except ReplyError as exc:  # no quorum for the log, a newer leader: look again
                log.info("event log: %s", exc.message)
                busy = False
            except Exception:
                log.exception("event dispatch step failed")
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle())

    def _idle(self) -> float:
        events = self.replicator.config.events
        return min(IDLE_POLL, events.edge_grace / 4, events.checkpoint_interval)

    async def _step(self) -> bool:
        """One round; True if there may be more to do at once."""
        rep = self._leading()
        if rep is None:
            members = self.replicator.members(EVENT_LOG_CHANNEL)
            if self.replicator.health.first_up(members) == self.replicator.id:
                await self.replicator.try_lead(EVENT_LOG_CHANNEL)
                rep = self._leading()
            if rep is None:
                return False
        self._load(rep)
        await self._report_silent()
        busy = await self._dispatch(rep)
        await self._checkpoint()
        return busy

    async def _report_silent(self) -> None:
        for node in self.liveness.overdue(time.monotonic()):
            log.warning(
                "edge process %s silent for %.0f s: reporting it gone", node, self.liveness.grace
            )
            entry = {"type": NODE_GONE, "id": f"gone:{node}", "node": node, "time": _ms()}
            await self._append_own(entry)
            self.gone.add(node)
            self.liveness.forget(node)

    async def _dispatch(self, rep: ChannelReplica) -> bool:
        stream = rep.stream
        assert stream is not None
        if not self.carry:
            pubs = stream.committed_after(self.carry_end, READ_STEP, time.time())
            if pubs and pubs[0].offset > self.carry_end + 1:
                lost = pubs[0].offset - self.carry_end - 1
                log.warning(
                    "event log: %d undelivered entries dropped (backlog or retention)", lost
                )
                self.metrics.events_lost.inc(lost)
            for pub in pubs:
                events = self.fold.apply(pub.data, pub.offset)
                self.carry += posted(events, self.replicator.config.events.types)
                self.carry_end = pub.offset
                if len(self.carry) >= self.replicator.config.events.batch_size:
                    break
            if not self.carry:
                self.cursor = self.carry_end
        self.metrics.events_backlog.set(stream.committed - self.cursor)
        if not self.carry:
            return False
        batch = self.carry[: self.replicator.config.events.batch_size]
        if not await self.poster.post(batch, self.replicator.config.events):
            await self.poster.back_off(self.replicator.config.events)
            return True  # the backoff was the wait: try again at once
        del self.carry[: len(batch)]
        if not self.carry:
            self.acked_since_checkpoint += self.carry_end - self.cursor
            self.cursor = self.carry_end
        return True

    async def _checkpoint(self) -> None:
        if self.carry or not self._checkpoint_due(time.monotonic()):
            return
        entry = {
            "type": CHECKPOINT,
            "id": f"checkpoint:{self.term}:{self.cursor}",
            "cursor": self.cursor,
            "state": self.fold.snapshot(),
            "time": _ms(),
        }
        await self._append_own(entry)
        self.acked_since_checkpoint = 0
        self.checkpoint_at = time.monotonic()

    def _checkpoint_due(self, now: float) -> bool:
        """A checkpoint holds every open connection, so it is written only once the entries
        acked since the last one are a fair share of its size: the log's checkpoints then
        weigh at most a few times its events. One is also written, whatever came, well
        before the last one would age out of the log (``events.retention``)."""
        events = self.replicator.config.events
        since = now - self.checkpoint_at
        if self.fold.connections and since > events.retention / 2:
            return True
        return (
            since >= events.checkpoint_interval
            and self.acked_since_checkpoint > 0
            and self.acked_since_checkpoint * CHECKPOINT_SHARE >= len(self.fold.connections)
        )

    async def _append_own(self, entry: dict[str, Any]) -> None:
        _, outcomes = await publish_all(
            self.replicator, EVENT_LOG_CHANNEL, [Proposal(entry, ikey=entry["id"])], time.time()
        )
        for outcome in outcomes:
            if isinstance(outcome, ReplyError):
                raise outcome


def _items(items: Any) -> list[dict[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ReplyError(ErrorCode.BAD_REQUEST, "items must be a list")
    return items


def _proposal(item: Any) -> Proposal:
    if not isinstance(item, dict) or item.get("type") not in EDGE_KINDS:
        raise ReplyError(ErrorCode.BAD_REQUEST, "an event must be an object with a known type")
    key = item.get("id")
    if not isinstance(key, str) or not key:
        raise ReplyError(ErrorCode.BAD_REQUEST, "an event needs a non-empty string id")
    return Proposal(item, ikey=key)


def _ms() -> int:
    return int(time.time() * 1000)
