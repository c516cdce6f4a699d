"""One channel's stream: its position (epoch, offset) and its bounded history. Pure code.

Publications enter at ``top``; readers only see them once ``committed`` reaches them, which the
replication layer advances when enough shards hold them.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The keys a publication record may carry: a record with no others is kept as it came.
RECORD_KEYS = frozenset(("data", "info", "offset", "tags", "time", "ikey"))


def new_epoch() -> str:
    """A fresh stream identity: positions from another epoch never recover into this one."""
    return secrets.token_hex(4)


@dataclass(slots=True)
class Publication:
    """A publication as stored (``offset`` 0 = not in history)."""

    offset: int
    data: Any
    time: int = 0
    info: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    # Idempotency key of the publish that made it; replicated, never sent to clients.
    ikey: str | None = None
    # When the leader took the publish (seconds, wall clock): local only, for the
    # publish-to-deliver latency that edges measure; 0 once replicated or restored.
    received: float = 0.0
    # Published as a delta (sent as a patch to subscribers that asked for them): local too,
    # carried to the edges with the push, never stored.
    delta: bool = field(default=False, compare=False)
    # Both forms are built once and shared: a publication is written to storage, sent to
    # every follower and pushed to every edge, and none of them may change what it is given.
    _wire: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _record: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_wire(self) -> dict[str, Any]:
        """The client-protocol Publication object, zero values omitted (shared: read only)."""
        out = self._wire
        if out is None:
            out = {"data": self.data}
            if self.info is not None:
                out["info"] = self.info
            if self.offset:
                out["offset"] = self.offset
            if self.tags:
                out["tags"] = self.tags
            if self.time:
                out["time"] = self.time
            self._wire = out
        return out

    def to_record(self) -> dict[str, Any]:
        """The replicated form: the wire form plus the idempotency key (shared: read only)."""
        out = self._record
        if out is None:
            out = self.to_wire()
            if self.ikey is not None:
                out = {**out, "ikey": self.ikey}
            self._record = out
        return out

    @classmethod
    def from_record(cls, record: Any) -> Publication:
        """A replicated record; ValueError if it is not one (it came over the network)."""
        if not isinstance(record, dict):
            raise ValueError("a publication record must be an object")
        info, tags, ikey = record.get("info"), record.get("tags"), record.get("ikey")
        if not (info is None or isinstance(info, dict)) or not (
            tags is None or isinstance(tags, dict)
        ):
            raise ValueError("info and tags of a record must be objects")
        if not (ikey is None or isinstance(ikey, str)):
            raise ValueError("ikey of a record must be a string")
        pub = cls(
            offset=_count(record.get("offset", 0), "offset"),
            data=record.get("data"),
            time=_count(record.get("time", 0), "time"),
            info=info,
            tags=tags,
            ikey=ikey,
        )
        if record.keys() <= RECORD_KEYS and pub.offset and (pub.tags or "tags" not in record):
            pub._record = record  # the peer's own record, already in the replicated form
        return pub


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class HistoryPage:
    publications: list[Publication]
    epoch: str
    offset: int


class ChannelStream:
    """Orders a channel's publications and keeps the last ``size`` of them for ``ttl`` seconds."""

    __slots__ = ("_entries", "_ikeys", "committed", "epoch", "size", "top", "ttl")

    def __init__(self, size: int, ttl: float, epoch_factory: Callable[[], str] = new_epoch) -> None:
        self.size = size
        self.ttl = ttl
        self.epoch = epoch_factory()
        self.top = 0  # offset of the newest publication held
        self.committed = 0  # offset of the newest publication readers may see
        # Oldest first; offsets are consecutive.
        self._entries: deque[Publication] = deque()
        # Idempotency key -> offset of the publication held that carries it: a publish with a
        # key looks it up without scanning the history.
        self._ikeys: dict[str, int] = {}

    def publish(
        self,
        data: Any,
        now: float,
        *,
        info: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        ikey: str | None = None,
        commit: bool = True,
    ) -> Publication:
        """Assign the next offset and keep the publication (committed at once unless told)."""
        time_ms = int(now * 1000)
        if skip_history or self.size == 0:
            return Publication(0, data, time_ms, info, tags, ikey, now)
        pub = Publication(self.top + 1, data, time_ms, info, tags, ikey, now)
        self.append(pub)
        if commit:
            self.committed = pub.offset
        return pub

    def append(self, pub: Publication) -> None:
        """Add the publication that follows ``top`` (a replica applying its leader's log)."""
        if pub.offset != self.top + 1:
            raise ValueError(f"offset {pub.offset} does not follow {self.top}")
        self.top = pub.offset
        self._entries.append(pub)
        if pub.ikey is not None:
            self._ikeys[pub.ikey] = pub.offset
        if len(self._entries) > self.size:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        pub = self._entries.popleft()
        if pub.ikey is not None and self._ikeys.get(pub.ikey) == pub.offset:
            del self._ikeys[pub.ikey]

    def commit(self, offset: int) -> list[Publication]:
        """Advance ``committed`` to ``offset``; returns the publications that became visible."""
        offset = min(offset, self.top)
        if offset <= self.committed:
            return []
        first = self.committed + 1
        self.committed = offset
        # Entries hold consecutive offsets ending at ``top``, so the newly visible ones are
        # found by position from the end: a commit costs what it returns, not the history.
        entries = self._entries
        if not entries:
            return []
        end = len(entries) - (entries[-1].offset - offset)
        start = max(0, end - (offset - first + 1))
        return [entries[i] for i in range(start, end)]

    @property
    def pending(self) -> int:
        """Publications held but not committed yet."""
        return self.top - self.committed

    def trim(self, now: float) -> None:
        entries = self._entries
        horizon_ms = (now - self.ttl) * 1000
        while entries and entries[0].time <= horizon_ms and entries[0].offset <= self.committed:
            self._drop_oldest()

    def _visible(self, now: float) -> list[Publication]:
        self.trim(now)
        committed = self.committed
        return [p for p in self._entries if p.offset <= committed]

    def since(self, offset: int, limit: int, now: float) -> HistoryPage:
        """Committed publications after ``offset``, oldest first, at most ``limit`` of them.

        The caller decides whether the page is a gapless continuation (see recovery).
        """
        if offset >= self.committed:
            self.trim(now)
            return HistoryPage([], self.epoch, self.committed)
        pubs = [p for p in self._visible(now) if p.offset > offset]
        if limit >= 0:
            pubs = pubs[:limit]
        return HistoryPage(pubs, self.epoch, self.committed)

    def committed_after(self, offset: int, limit: int, now: float) -> list[Publication]:
        """Up to ``limit`` committed publications after ``offset``, oldest first, found by
        position: a reader walking a long history in steps (the event log's dispatcher) pays
        for what it reads, not for the history."""
        self.trim(now)
        entries = self._entries
        if offset >= self.committed or not entries:
            return []
        start = max(0, len(entries) - (self.top - offset))
        end = min(len(entries) - (self.top - self.committed), start + limit)
        return list(itertools.islice(entries, start, end))

    def history(
        self, limit: int, now: float, *, since: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        """The history command: ``limit`` 0 = position only, negative = all that is kept."""
        pubs = self._visible(now)
        if limit == 0:
            return HistoryPage([], self.epoch, self.committed)
        if reverse:
            if since is not None:
                pubs = [p for p in pubs if p.offset < since]
            pubs.reverse()
        elif since is not None:
            pubs = [p for p in pubs if p.offset > since]
        if limit > 0:
            pubs = pubs[:limit]
        return HistoryPage(pubs, self.epoch, self.committed)

    def records_after(self, offset: int) -> list[dict[str, Any]] | None:
        """Replicated records of every publication after ``offset`` (committed or not);
        None when some of them are no longer held (the follower needs a whole install)."""
        if offset >= self.top:
            return []
        entries = self._entries
        if not entries or entries[0].offset > offset + 1:
            return None
        # Consecutive offsets ending at ``top``: start by position, not by a scan.
        start = len(entries) - (self.top - offset)
        return [entries[i].to_record() for i in range(start, len(entries))]

    def held(self) -> list[Publication]:
        """Every publication held, committed or not, oldest first."""
        return list(self._entries)

    def find_ikey(self, ikey: str) -> Publication | None:
        offset = self._ikeys.get(ikey)
        entries = self._entries
        if offset is None or not entries:
            return None
        return entries[offset - entries[0].offset]

    def clear(self) -> None:
        """Drop the publications but keep the position (history_remove)."""
        self._entries.clear()
        self._ikeys.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything a replica needs to continue this stream."""
        return {
            "epoch": self.epoch,
            "top": self.top,
            "committed": self.committed,
            "pubs": [p.to_record() for p in self._entries],
        }

    @classmethod
    def restore(cls, state: dict[str, Any], size: int, ttl: float) -> ChannelStream:
        """The stream a snapshot describes; ValueError if it does not hold together (a peer
        sent it: a bad one must not leave a stream whose offsets skip or run backwards)."""
        epoch = state.get("epoch")
        if not isinstance(epoch, str) or not epoch:
            raise ValueError("snapshot epoch must be a non-empty string")
        top = _count(state.get("top"), "snapshot top")
        committed = _count(state.get("committed", 0), "snapshot committed")
        if committed > top:
            raise ValueError("snapshot committed is past its top")
        records = state.get("pubs", [])
        if not isinstance(records, list):
            raise ValueError("snapshot pubs must be a list")
        pubs = [Publication.from_record(r) for r in records]
        if [p.offset for p in pubs] != list(range(top - len(pubs) + 1, top + 1)):
            raise ValueError("snapshot publications must run consecutively up to its top")
        stream = cls(size, ttl, epoch_factory=lambda: epoch)
        stream.top = top
        stream.committed = committed
        for pub in pubs[-size:] if size else []:
            stream._entries.append(pub)
            if pub.ikey is not None:
                stream._ikeys[pub.ikey] = pub.offset
        return stream

    def __len__(self) -> int:
        return len(self._entries)
