"""One shard's copy of one channel: terms, fencing and commit counting. Pure code.

The protocol, per channel:

- Every shard keeps a promised ``term``. A shard that must lead (it is the first healthy member
  of the channel's replica set) *claims* a higher term from the other members. A member grants
  a term only if it is higher than any it promised, and then rejects every message of a lower
  term: a deposed leader is fenced.
- With its grants the claimant gets each granter's stream. It adopts the best one (the highest
  ``accepted_term``, then the highest ``top``): any publication that was committed is in it,
  because a commit needs ``min_copies`` holders and the claim needs ``election_quorum``
  granters, and the two sets always meet.
- The leader installs its stream on each follower, then appends new publications. A
  publication is committed, visible to readers and acked, once ``min_copies`` shards (leader
  included) hold it under the leader's term.

What belongs here: every rule that decides terms, grants, fencing and commits, so that they
can be read and tested in one place. What never does: links, timers, clocks or asyncio; the
caller (``origin.replication``) passes messages in and acts on what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from skyrelay.origin.stream import ChannelStream, Publication, new_epoch


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"  # claiming leadership
    LEADER = "leader"


def election_quorum(members: int, min_copies: int) -> int:
    """Granters (claimant included) a claim needs so that it meets every commit quorum."""
    return members - min_copies + 1


@dataclass(slots=True)
class FollowerProgress:
    # Highest offset the follower confirmed under the current term.
    match: int = 0
    # Highest offset sent to it (appends are pipelined); None = it needs an install first.
    sent: int | None = None
    installing: bool = False


class ChannelReplica:
    __slots__ = (
        "accepted_term",
        "adopted_top",
        "channel",
        "durable_top",
        "followers",
        "leader",
        "min_copies",
        "role",
        "self_id",
        "size",
        "stream",
        "term",
        "ttl",
    )

    def __init__(
        self,
        channel: str,
        self_id: str,
        size: int,
        ttl: float,
        min_copies: int,
        floor_term: int = 0,
    ) -> None:
        self.channel = channel
        self.self_id = self_id
        self.size = size
        self.ttl = ttl
        self.min_copies = min_copies
        self.stream: ChannelStream | None = None
        # Highest term promised. A restarted shard starts from its boot time (a floor), so it
        # never grants again a term it may have promised before the restart.
        self.term = floor_term
        # Term of the leader whose stream this replica last took (0 = none).
        self.accepted_term = 0
        self.leader: str | None = None
        self.role = Role.FOLLOWER
        self.followers: dict[str, FollowerProgress] = {}
        # Top of the stream this replica took when it became leader: it serves once that is
        # committed under its own term, so it never shows less than a previous leader did.
        self.adopted_top = 0
        # How far this shard's own copy is on its storage, where acks wait for storage: the
        # leader's copy counts toward a commit only that far. None: acks do not wait.
        self.durable_top: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def state(self) -> dict[str, Any] | None:
        return None if self.stream is None else self.stream.snapshot()

    # Follower side. Each returns the response body for the edge link.

    def on_claim(self, term: int, candidate: str) -> dict[str, Any]:
        if term <= self.term:
            return {"granted": False, "term": self.term}
        self._follow(term, candidate)
        return {"granted": True, "accepted_term": self.accepted_term, "state": self.state()}

    def on_append(
        self, term: int, leader: str, prev: int, records: list[dict[str, Any]], commit: int
    ) -> dict[str, Any]:
        if term < self.term:
            return {"ok": False, "term": self.term}
        pubs = [Publication.from_record(record) for record in records]  # ValueError first
        self._follow(term, leader)
        stream = self.stream
        if stream is None or self.accepted_term != term or stream.top < prev:
            return {"ok": False, "install": True}
        for pub in pubs:
            if pub.offset <= stream.top:
                continue  # already applied: the same leader sent it before
            if pub.offset != stream.top + 1:
                return {"ok": False, "install": True}
            stream.append(pub)
        stream.commit(commit)
        return {"ok": True, "top": stream.top}

    def on_install(self, term: int, leader: str, state: dict[str, Any]) -> dict[str, Any]:
        if term < self.term:
            return {"ok": False, "term": self.term}
        stream = ChannelStream.restore(state, self.size, self.ttl)  # ValueError first
        self._follow(term, leader)
        self.stream = stream
        self.accepted_term = term
        return {"ok": True, "top": self.stream.top}

    def _follow(self, term: int, leader: str) -> None:
        self.term = term
        self.leader = leader
        if leader != self.self_id:
            self.role = Role.FOLLOWER
            self.followers.clear()

    # Leader side.

    def start_claim(self, term: int) -> None:
        self.term = term
        self.role = Role.CANDIDATE
        self.leader = None

    def become_leader(
        self,
        term: int,
        best: dict[str, Any] | None,
        members: list[str],
        epoch_factory: Callable[[], str] = new_epoch,
    ) -> None:
        """Lead with ``best`` (a stream snapshot; None = no member had one, start afresh)."""
        if best is None:
            self.stream = ChannelStream(self.size, self.ttl, epoch_factory)
        else:
            self.stream = ChannelStream.restore(best, self.size, self.ttl)
        self.term = term
        self.accepted_term = term
        self.leader = self.self_id
        self.role = Role.LEADER
        self.adopted_top = self.stream.top
        self.followers = {m: FollowerProgress() for m in members if m != self.self_id}

    def propose(
        self,
        data: Any,
        now: float,
        *,
        info: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        ikey: str | None = None,
    ) -> Publication:
        assert self.stream is not None and self.is_leader
        return self.stream.publish(data, now, info=info, tags=tags, ikey=ikey, commit=False)

    def on_ack(self, follower: str, top: int) -> list[Publication]:
        """A follower holds everything up to ``top``; returns what became committed."""
        progress = self.followers.get(follower)
        if progress is not None and top > progress.match:
            progress.match = top
        return self.advance_commit()

    def advance_commit(self) -> list[Publication]:
        stream = self.stream
        if stream is None or not self.is_leader:
            return []
        own = stream.top if self.durable_top is None else min(stream.top, self.durable_top)
        held = sorted([own, *(p.match for p in self.followers.values())], reverse=True)
        if len(held) < self.min_copies:
            return []
        return stream.commit(held[self.min_copies - 1])

    def step_down(self, term: int, leader: str | None) -> None:
        """A higher term exists: stop leading."""
        self.term = max(self.term, term)
        self.leader = leader
        self.role = Role.FOLLOWER
        self.followers.clear()


def best_state(
    candidates: list[tuple[int, dict[str, Any] | None]],
) -> dict[str, Any] | None:
    """The stream to lead with among (accepted_term, state) pairs: highest term, then top."""
    best: tuple[int, int] | None = None
    chosen: dict[str, Any] | None = None
    for accepted_term, state in candidates:
        if state is None:
            continue
        key = (accepted_term, int(state.get("top", 0)))
        if best is None or key > best:
            best, chosen = key, state
    return chosen
