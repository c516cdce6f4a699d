"""Keeping a shard's channel copies on its storage: what the replication driver writes when,
how the leader's own copy comes to count toward commits, and loading the copies back at start.

Followers answer an append or install only once it is durable (``origin.link`` holds the
answer until its write resolves); the leader counts its own copy up to ``durable_top``, which
advances here as its writes resolve. At level memory there is no store and nothing waits.

What belongs here: the link between replicas and the store. What never does: the replication
rules (``origin.replica``) or the file format (``origin.storage``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from skyrelay.config import ClusterConfig
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.storage.store import Batch, ShardStore
from skyrelay.origin.stream import ChannelStream, Publication

log = logging.getLogger("skyrelay.origin.persistence")


class Persistence:
    """Writes for the replicas of one shard (``store`` None: level memory, no writes)."""

    def __init__(
        self,
        store: ShardStore | None,
        replicas: Mapping[str, ChannelReplica],
        on_durable: Callable[[ChannelReplica], None],
    ) -> None:
        self.store = store
        self._replicas = replicas
        self._on_durable = on_durable
        # Leader channels: (marker, top) of own writes not resolved yet, oldest first.
        self._own: dict[str, deque[tuple[int, int]]] = {}
        # Whole copies the store took on its own (healing a failed write, compaction): the
        # leadership they were taken in, by the count of ``took_lead``, and their top.
        self._leaderships = 0
        self._snapped: dict[str, tuple[int, int]] = {}
        self._leadership: dict[str, int] = {}
        if store is not None:
            store.listeners.append(self._stored)
            store.snapshots = self.snapshot

    @property
    def marker(self) -> int:
        """The newest write so far: an answer sent after it resolves reflects every write."""
        return 0 if self.store is None else self.store.last_marker

    def took_lead(self, rep: ChannelReplica) -> None:
        """A new leadership with the adopted copy: it counts once it is on disk."""
        if self.store is None or rep.stream is None:
            return
        rep.durable_top = 0
        self._own[rep.channel] = deque()
        self._leaderships += 1
        self._leadership[rep.channel] = self._leaderships
        self._write_state(rep)

    def stepped_down(self, channel: str) -> None:
        self._own.pop(channel, None)
        self._leadership.pop(channel, None)

    def installed(self, rep: ChannelReplica) -> None:
        """The whole copy changed (an install, history removed)."""
        if self.store is not None and rep.stream is not None:
            self._write_state(rep)

    def proposed(self, rep: ChannelReplica, pubs: list[Publication]) -> None:
        """The leader ordered ``pubs`` (consecutive, newest last)."""
        if self.store is None or rep.stream is None:
            return
        marker = self.store.save_publications(
            rep.channel, rep.term, [pub.to_record() for pub in pubs], rep.stream.committed
        )
        self._track(rep, marker, pubs[-1].offset)

    def appended(self, rep: ChannelReplica, before: int) -> None:
        """A follower applied an append: write what it added past ``before``."""
        stream = rep.stream
        if self.store is None or stream is None or stream.top <= before:
            return
        added = stream.records_after(before)
        if added is None:  # more than the history holds: the whole copy instead
            self._write_state(rep)
            return
        self.store.save_publications(rep.channel, rep.accepted_term, added, stream.committed)

    def _write_state(self, rep: ChannelReplica) -> None:
        assert self.store is not None and rep.stream is not None
        marker = self.store.save_state(rep.channel, rep.stream.snapshot(), rep.accepted_term)
        self._track(rep, marker, rep.stream.top)

    def _track(self, rep: ChannelReplica, marker: int, top: int) -> None:
        own = self._own.get(rep.channel)
        if own is not None and rep.is_leader:
            own.append((marker, top))

    def _stored(self, batch: Batch) -> None:
        assert self.store is not None
        for channel in batch.channels:
            own = self._own.get(channel)
            rep = self._replicas.get(channel)
            snapped = self._snapped.pop(channel, None)
            if own is None or rep is None:
                continue
            before = rep.durable_top or 0
            while own and own[0][0] <= batch.last:
                marker, top = own.popleft()
                if not self.store.failed(marker):
                    rep.durable_top = max(rep.durable_top or 0, top)
            if snapped is not None and batch.ok and snapped[0] == self._leadership.get(channel):
                rep.durable_top = max(rep.durable_top or 0, snapped[1])
            if (rep.durable_top or 0) > before:
                self._on_durable(rep)

    def snapshot(self, channel: str) -> tuple[dict[str, Any], int] | None:
        """A channel's whole copy for the store (compaction, healing after a failed write)."""
        rep = self._replicas.get(channel)
        if rep is None or rep.stream is None:
            return None
        rep.stream.trim(time.time())
        self._snapped[channel] = (self._leadership.get(channel, 0), rep.stream.top)
        return rep.stream.snapshot(), rep.accepted_term


def load_copies(
    store: ShardStore,
    config: ClusterConfig,
    replica: Callable[[str], ChannelReplica],
) -> tuple[list[str], bool]:
    """Put every copy the store holds back into its replica (as a follower). Returns their
    channels, and whether the log was damaged (then a copy may lack what the disk lost)."""

    def keep(channel: str) -> int | None:
        ns = config.stream_namespace(channel)
        return None if ns is None else ns.history_size

    def ttl(channel: str) -> float:
        ns = config.stream_namespace(channel)
        return ns.history_ttl if ns is not None else 0.0

    started = time.perf_counter()
    loaded = store.load(keep, ttl, time.time())
    for problem in loaded.rejected[:20]:
        log.warning("storage: skipped %s", problem)
    for channel, image in loaded.images.items():
        rep = replica(channel)
        rep.stream = ChannelStream.restore(image.snapshot(), rep.size, rep.ttl)
        rep.accepted_term = image.accepted_term
        rep.term = max(rep.term, image.accepted_term)
    log.info(
        "storage: %d channel copies loaded in %.2f s (%d bytes in %d segments)",
        len(loaded.images),
        time.perf_counter() - started,
        store.log.total_bytes,
        len(store.log.numbers),
    )
    return list(loaded.images), store.damaged or bool(loaded.rejected)
