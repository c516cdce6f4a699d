"""A shard's storage: the channel copies it holds, written to its segment log before they count.

Writes made during one loop turn go to disk together (group commit): at level ``disk`` with
one ``write`` at the end of the turn, at level ``fsync`` followed by an ``fsync`` in a thread
while the next turns' writes gather. Every write returns a marker; a batch *resolves* when it
is written (and synced), or fails. Whoever must not act before a write is durable (a follower's
answer, a leader counting its own copy) waits for its marker.

A failed batch (a full or read-only disk) leaves the disk behind memory for its channels. The
next batch first rewrites their whole copies, so the log never has a gap; until a batch
succeeds, nothing that waits on the store goes ahead.

What belongs here: batching, durability levels, failures, compaction. What never does: the
replication rules or the record meanings beyond choosing which to write (``records``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyrelay.config import ClusterConfig
from skyrelay.origin.storage import frames, records
from skyrelay.origin.storage.identity import claim_directory
from skyrelay.origin.storage.segments import SegmentLog

log = logging.getLogger("skyrelay.origin.storage")

# A channel's whole copy and the term it was accepted under; None: this shard holds none.
Snapshots = Callable[[str], tuple[dict[str, Any], int] | None]
# Failed batches remembered, so late askers still learn their write failed.
FAILURES_KEPT = 64
# Segments the log keeps before compaction rewrites the oldest one's live copies: disk use
# stays near (SEGMENTS_KEPT + 1) segments plus the live copies, and a copy is rewritten at
# most once per SEGMENTS_KEPT segments written.
SEGMENTS_KEPT = 3
# Seconds after a failed write before the store tries again on its own.
RETRY_AFTER = 0.5


@dataclass(frozen=True, slots=True)
class Batch:
    """What one resolved batch covered: markers up to ``last``, and the channels in it."""

    last: int
    ok: bool
    channels: frozenset[str]


@dataclass(slots=True)
class StoreStats:
    batches: int = 0
    records: int = 0
    bytes_written: int = 0
    failures: int = 0
    compactions: int = 0
    # Seconds the last batch took to write (and sync).
    last_flush_seconds: float = 0.0
    flush_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=256))


class ShardStore:
    @classmethod
    def open(cls, config: ClusterConfig, shard_id: str) -> ShardStore | None:
        """The store ``config`` gives this shard (None at level memory); a directory it may
        not use is a ``ConfigError``."""
        settings = config.origin
        if settings.durability == "memory":
            return None
        directory = Path(settings.data_dir.replace("{shard}", shard_id))
        lock = claim_directory(directory, settings.cluster_id, shard_id, "origin.data_dir")
        store = cls(
            directory,
            fsync=settings.durability == "fsync",
            segment_bytes=settings.storage_segment_bytes,
        )
        store.lock_fd = lock
        return store

    def __init__(self, directory: Path, *, fsync: bool, segment_bytes: int) -> None:
        self.log = SegmentLog(directory, segment_bytes)
        self.fsync = fsync
        # Where whole copies come from (set by whoever owns them; none until then).
        self.snapshots: Snapshots = lambda _: None
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._seq = 0
        self.resolved = 0
        self._failed: deque[tuple[int, int]] = deque(maxlen=FAILURES_KEPT)
        self._dirty: set[str] = set()
        # Channel -> segment holding its latest state record: compaction rewrites the
        # channels whose base is in the oldest segment, then deletes that segment.
        self.base: dict[str, int] = {}
        self.failing: str | None = None
        self.stats = StoreStats()
        self.listeners: list[Callable[[Batch], None]] = []
        self._scheduled = False
        self._busy = False
        self._closing = False
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="skyrelay-fsync")
        # (marker, segment) while the copies based in that segment are being rewritten.
        self._compacting: tuple[int, int] | None = None
        # The directory's lock, held while the process lives (None: not locked here).
        self.lock_fd: int | None = None

    @property
    def last_marker(self) -> int:
        """The marker of the newest write."""
        return self._seq

    def load(
        self, keep: Callable[[str], int | None], ttl: Callable[[str], float], now: float
    ) -> records.Replay:
        """Every channel copy on disk (at start-up, before any write)."""

        def stream() -> Any:
            for number, recs in self.log.read():
                for record in recs:
                    if record.get("k") == records.STATE and isinstance(record.get("ch"), str):
                        self.base[record["ch"]] = number
                    yield record

        result = records.replay(stream(), keep, ttl, now)
        self.base = {ch: seg for ch, seg in self.base.items() if ch in result.images}
        return result

    @property
    def damaged(self) -> bool:
        """Whether loading cut a damaged or torn tail off some segment."""
        return bool(self.log.damage)

    # Writes.

    def save_state(self, channel: str, snapshot: dict[str, Any], accepted_term: int) -> int:
        self._dirty.discard(channel)
        rec = records.state_record(channel, snapshot, accepted_term, time.time())
        self._pending[channel] = [rec]  # it replaces whatever was still waiting
        return self._next()

    def save_publications(
        self, channel: str, term: int, pubs: list[dict[str, Any]], committed: int
    ) -> int:
        queued = self._pending.setdefault(channel, [])
        last = queued[-1] if queued else None
        if last is not None and last["k"] == records.PUBLICATIONS and last["at"] == term:
            last["pubs"].extend(pubs)
            last["c"] = committed
        else:
            queued.append(records.publications_record(channel, term, pubs, committed, time.time()))
        return self._next()

    def _next(self) -> int:
        self._seq += 1
        if not self._scheduled and not self._busy:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return self._seq

    def flush_now(self) -> None:
        """Write what is waiting now rather than at the end of the loop turn: for a caller
        that has just made the last write of a batch (a frame of appends) and whose answers
        wait for it."""
        if self._pending and not self._busy:
            self._flush()

    def failed(self, marker: int) -> bool:
        """Whether the write ``marker`` (resolved) failed."""
        failures = self._failed
        return bool(failures) and any(first <= marker <= last for first, last in failures)

    # Flushing.

    def _flush(self) -> None:
        if not self._scheduled and not self._pending and not self._dirty:
            return  # flushed early (flush_now) before this scheduled call came
        self._scheduled = False
        if self._busy:
            return  # a sync is running; when it ends it flushes what is waiting
        if not self._pending and not self._dirty:
            return
        first, last = self.resolved + 1, self._seq
        batch, self._pending = self._pending, {}
        for channel in self._dirty - batch.keys():
            batch[channel] = []
        data, states = self._encode(batch)
        started = time.perf_counter()
        try:
            segment = self.log.append(data)
        except OSError as exc:
            self._fail(first, last, batch.keys(), exc)
            return
        for channel in states:
            self.base[channel] = segment
        self.stats.records += sum(len(v) for v in batch.values())
        self.stats.bytes_written += len(data)
        if not self.fsync:
            self._done(first, last, batch.keys(), started)
            return
        self._busy = True
        future = asyncio.get_running_loop().run_in_executor(self._sync_thread, self.log.sync)
        future.add_done_callback(lambda f: self._synced(f, first, last, batch.keys(), started))

    def _encode(self, batch: dict[str, list[dict[str, Any]]]) -> tuple[bytes, list[str]]:
        parts: list[bytes] = []
        states: list[str] = []
        for channel, queued in batch.items():
            recs = queued
            if channel in self._dirty:
                # Missed a write: the whole copy first, so the log has no gap.
                self._dirty.discard(channel)
                whole = self.snapshots(channel)
                if whole is not None:
                    recs = [records.state_record(channel, whole[0], whole[1], time.time())]
            for rec in recs:
                if rec["k"] == records.STATE:
                    states.append(channel)
                parts.append(frames.encode(rec))
        return b"".join(parts), states

    def _synced(
        self, future: asyncio.Future[None], first: int, last: int, channels: Any, started: float
    ) -> None:
        self._busy = False
        exc = future.exception()
        if isinstance(exc, OSError):
            self._fail(first, last, channels, exc)
        elif exc is not None:
            raise exc
        else:
            self._done(first, last, channels, started)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _done(self, first: int, last: int, channels: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.last_flush_seconds = elapsed
        self.stats.flush_seconds.append(elapsed)
        if self.failing is not None:
            log.warning("storage writes succeed again (after: %s)", self.failing)
            self.failing = None
        self.resolved = last
        batch = Batch(last, True, frozenset(channels))
        self._tell(batch)
        self._compacted(batch)
        self._maybe_compact()

    def _fail(self, first: int, last: int, channels: Any, exc: OSError) -> None:
        self.stats.failures += 1
        reason = f"{exc.strerror or exc} ({self.log.directory})"
        if self.failing != reason:
            log.error(
                "storage write failed: %s; publishes fail as temporary until writes succeed",
                reason,
            )
        self.failing = reason
        self._failed.append((first, last))
        self._dirty |= set(channels)
        self.resolved = last
        # Try again by itself: space may come back while nothing new is written.
        asyncio.get_running_loop().call_later(RETRY_AFTER, self._retry)
        batch = Batch(last, False, frozenset(channels))
        self._tell(batch)
        self._compacted(batch)

    def _retry(self) -> None:
        if self._dirty and not self._scheduled and not self._busy and not self._closing:
            self._scheduled = True
            self._flush()

    def _tell(self, batch: Batch) -> None:
        for listener in list(self.listeners):
            listener(batch)

    # Compaction.

    def _maybe_compact(self) -> None:
        """Past ``SEGMENTS_KEPT`` segments, rewrite the copies based in the oldest one at the
        head; once that is durable, the oldest holds nothing live and is deleted."""
        numbers = self.log.numbers
        if self._compacting is not None or len(numbers) <= SEGMENTS_KEPT:
            return
        oldest = numbers[0]
        for channel in [ch for ch, seg in self.base.items() if seg <= oldest]:
            whole = self.snapshots(channel)
            if whole is None:
                del self.base[channel]
            else:
                self.save_state(channel, *whole)
        self._compacting = (self._seq, oldest)
        if not self._pending:  # nothing to rewrite: the oldest segment is dead already
            self._compacted(Batch(self._seq, True, frozenset()))

    def _compacted(self, batch: Batch) -> None:
        if self._compacting is None or batch.last < self._compacting[0]:
            return
        oldest = self._compacting[1]
        self._compacting = None
        if batch.ok and not any(seg <= oldest for seg in self.base.values()):
            freed = self.log.delete_before(oldest + 1)
            self.stats.compactions += 1
            log.info("storage compacted: segment %d deleted (%d bytes freed)", oldest, freed)

    async def close(self) -> None:
        """Write what is waiting, then release the files."""
        self._closing = True
        while self._pending or self._busy or self._scheduled:
            if self._pending and not self._busy and not self._scheduled:
                self._flush()
            await asyncio.sleep(0.001)
        self.log.close()
        self._sync_thread.shutdown(wait=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
