"""Leadership and replication of channels between shards (the async driver of ``replica``).

Claims, installs and appends go over the same links the edges use. Appends are pipelined: each
one is sent as soon as the publication is ordered, without waiting for the previous answer,
and the link batches whatever is queued in one loop turn into one frame.

What belongs here: when to claim, whom to ask and how long to wait, what to send to which
follower, and waking the publishes a commit completes. What never does: the rules themselves
(``origin.replica`` and ``origin.claims`` decide; this only carries their messages), and
anything about edges or clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from skyrelay.config import ClusterConfig
from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.origin import amnesia
from skyrelay.origin.claims import Ballot
from skyrelay.origin.commits import CommitWaiters
from skyrelay.origin.feeding import Feed
from skyrelay.origin.persistence import Persistence
from skyrelay.origin.replica import ChannelReplica, Role, best_state, election_quorum
from skyrelay.origin.storage.store import ShardStore
from skyrelay.origin.stream import Publication
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.ring import Ring
from skyrelay.ring.health import HealthView

log = logging.getLogger("skyrelay.origin.replication")

# Claims retried with a higher term before the request fails as temporary.
CLAIM_ATTEMPTS = 3
# How often a claim waiting for links to other members checks again, in seconds.
LINK_WAIT_POLL = 0.05
# Takeovers the status page lists per shard.
RECENT_TAKEOVERS = 20

CommitHandler = Callable[[str, list[Publication]], None]
StepDownHandler = Callable[[str, str | None], None]


def now_ms() -> int:
    return int(time.time() * 1000)


def temporary(message: str) -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, message, temporary=True)


class Replicator:
    def __init__(
        self,
        config: ClusterConfig,
        shard_id: str,
        ring: Ring,
        health: HealthView,
        links: Mapping[str, LinkClient],
        on_commit: CommitHandler,
        on_step_down: StepDownHandler,
        store: ShardStore | None = None,
    ) -> None:
        self.config = config
        self.id = shard_id
        self.ring = ring
        self.health = health
        self.links = links
        self._on_commit = on_commit
        self._on_step_down = on_step_down
        # The ring before the last reconfiguration: claims also gather a quorum of the
        # channel's previous members, which hold its history while it moves. A shard that
        # starts may be joining a running cluster, so it first assumes the ring without
        # itself: it never counts its own empty copy as the channel's history.
        self.prev_ring: Ring | None = ring.without(shard_id)
        self.replicas: dict[str, ChannelReplica] = {}
        self.feed = Feed(self)
        self.persistence = Persistence(
            store, self.replicas, lambda rep: self.commit(rep, rep.advance_commit())
        )
        self._claims: dict[str, asyncio.Future[None]] = {}
        self._waiting = CommitWaiters()
        # Terms start at boot time: a restarted shard never re-grants a term it promised.
        self.boot_term = now_ms()
        self.booted = time.time()
        # Whether this shard restarted into a running cluster (see origin/amnesia.py); None
        # until it has asked its peers, and meanwhile it assumes the worst.
        self.joined_running: bool | None = None
        # Whether this shard's storage holds all it acknowledged before a restart (a clean
        # load): then no copy is forgotten. Copies loaded from a damaged log are ``unsure``
        # until a leader installs or appends to them: they may lack what the disk lost.
        self.remembers = False
        self.unsure: set[str] = set()
        # Stopping: leads nothing any more (its leaderships are being handed over).
        self.draining = False
        self.takeovers = 0
        # The latest takeovers from another leader, newest last, for the status page.
        self.recent_takeovers: deque[dict[str, Any]] = deque(maxlen=RECENT_TAKEOVERS)

    def members(self, channel: str) -> list[str]:
        return list(self.ring.replicas(channel))

    def previous_members(self, channel: str) -> list[str]:
        if self.prev_ring is None:
            return self.members(channel)
        return list(self.prev_ring.replicas(channel))

    def _quorum_met(self, granted: set[str], members: list[str]) -> bool:
        copies = min(self.config.effective_min_copies, len(members))
        needed = election_quorum(len(members), copies)
        return sum(1 for m in members if m in granted) >= needed

    def replica(self, channel: str) -> ChannelReplica:
        found = self.replicas.get(channel)
        if found is None:
            ns = self.config.stream_namespace(channel)
            if ns is None:
                raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in {channel!r}")
            size = len(self.members(channel))
            min_copies = min(self.config.effective_min_copies, size)
            found = ChannelReplica(
                channel, self.id, ns.history_size, ns.history_ttl, min_copies, self.boot_term
            )
            self.replicas[channel] = found
        return found

    def amnesiac(self, rep: ChannelReplica) -> bool:
        """This shard holds nothing of the channel (or an unsure copy) and may have forgotten
        it in a restart."""
        if self.remembers and rep.channel not in self.unsure:
            return False
        knows = rep.stream is not None or bool(rep.accepted_term)
        return (rep.channel in self.unsure or not knows) and amnesia.still_amnesiac(
            self.config, self.booted, self.joined_running, time.time()
        )

    def reachable(self, shard_id: str) -> bool:
        link = self.links.get(shard_id)
        return self.health.is_up(shard_id) and link is not None and link.is_up

    # Leadership.

    async def lead(self, channel: str) -> ChannelReplica:
        """This shard's replica of ``channel``, leading; or NOT_LEADER naming who should."""
        if self.draining:
            others = [m for m in self.members(channel) if m != self.id]
            if not others:
                raise temporary("this shard is stopping")
            raise wire.not_leader(self.health.first_up(others) or others[0])
        rep = self.replica(channel)
        if rep.is_leader:
            if rep.stream is not None and rep.stream.committed < rep.adopted_top:
                await self.wait_commit(rep, rep.adopted_top)
            return rep
        members = self.members(channel)
        preferred = self.health.first_up(members)
        if preferred != self.id:
            raise wire.not_leader(preferred or members[0])
        claim = self._claims.get(channel)
        if claim is None:
            claim = asyncio.ensure_future(self._claim(channel))
            self._claims[channel] = claim
            claim.add_done_callback(lambda _: self._claims.pop(channel, None))
        await asyncio.shield(claim)
        if rep.role is not Role.LEADER or rep.stream is None:
            raise temporary("leadership lost during the claim")
        await self.wait_commit(rep, rep.adopted_top)
        return rep

    async def reclaim(self, channel: str) -> ChannelReplica:
        """Lead ``channel`` again under a new term, from a quorum's copies: for a leader that
        learnt its copy is behind (it was deposed without hearing of it)."""
        rep = self.replica(channel)
        if rep.is_leader:
            log.warning("copy of %s is behind an edge; claiming it again", channel)
            self.step_down(channel, rep.term, None)
        return await self.lead(channel)

    async def _claim(self, channel: str) -> None:
        """Ask the members for a higher term until a quorum grants it (then lead with the
        best copy they hold), a newer claim wins, or the attempts run out."""
        rep = self.replica(channel)
        deposed = rep.leader
        members = self.members(channel)
        previous = self.previous_members(channel)
        asked_for = list(dict.fromkeys(members + previous))
        term = max(rep.term + 1, now_ms())
        timeout = self.config.origin.claim_timeout
        for _ in range(CLAIM_ATTEMPTS):
            rep.start_claim(term)
            others = await self._reachable_members(
                asked_for,
                lambda up: self._quorum_met(up, members) and self._quorum_met(up, previous),
                timeout,
            )
            ballot = Ballot(members, previous, asked_for, self.id, self.amnesiac(rep))
            await self._gather_grants(ballot, channel, term, others, timeout)
            if rep.role is not Role.CANDIDATE or rep.term != term:
                raise temporary("a newer claim won")
            if ballot.won(self._quorum_met):
                self._take_lead(rep, term, deposed, ballot.granted, members)
                return
            term = max(ballot.higher + 1, term + 1, now_ms())
        rep.role = Role.FOLLOWER
        raise temporary(f"no quorum to lead {channel}")

    async def _gather_grants(
        self, ballot: Ballot, channel: str, term: int, others: list[str], limit: float
    ) -> None:
        """Ask ``others`` for ``term``; stop at the first quorum of grants: a member that
        hangs (paused, partitioned) must not hold the takeover up until its timeout."""
        params = {"ch": channel, "term": term, "from": self.id}
        pending = {
            asyncio.ensure_future(self.ask(m, wire.OP_CLAIM, params, limit)): m for m in others
        }
        try:
            while pending and not ballot.won(self._quorum_met):
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    ballot.count(pending.pop(future), future.result())
        finally:
            for future in pending:
                future.cancel()

    def _take_lead(
        self,
        rep: ChannelReplica,
        term: int,
        deposed: str | None,
        granted: list[tuple[int, dict[str, Any] | None]],
        members: list[str],
    ) -> None:
        channel = rep.channel
        best = best_state([(rep.accepted_term, rep.state()), *granted])
        rep.become_leader(term, best, members)
        self.unsure.discard(channel)
        self.persistence.took_lead(rep)
        self.takeovers += 1
        if deposed and deposed != self.id:
            self.recent_takeovers.append(
                {"at": time.time(), "channel": channel, "from": deposed, "term": term}
            )
        log.info(
            "leading %s at term %d (top %d)", channel, term, rep.stream.top if rep.stream else 0
        )
        # With min_copies 1 the adopted stream is committed by this shard alone; no follower
        # ack would ever come to commit it.
        self.commit(rep, rep.advance_commit())
        for follower in rep.followers:
            self.replicate(channel, follower)

    async def try_lead(self, channel: str) -> None:
        """Lead ``channel`` if a quorum allows it now; nothing if not (a later request will)."""
        with contextlib.suppress(ReplyError):
            await self.lead(channel)

    async def _reachable_members(
        self, members: list[str], enough: Callable[[set[str]], bool], limit: float
    ) -> list[str]:
        """The other members we can talk to; waits up to ``limit`` for links still
        connecting until the reachable ones (with us) are ``enough``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            others = [m for m in members if m != self.id and self.reachable(m)]
            if enough({self.id, *others}) or loop.time() >= deadline:
                return others
            await asyncio.sleep(LINK_WAIT_POLL)

    async def ask(
        self, shard_id: str, op: str, params: dict[str, Any], limit: float
    ) -> dict[str, Any] | None:
        try:
            return await self.links[shard_id].call(op, params, limit)
        except ReplyError:
            return None

    # Replication (leader side).

    def replicate_soon(self, channel: str) -> None:
        """Send ``channel``'s followers what they lack at the end of this loop turn."""
        self.feed.soon(channel)

    def replicate(self, channel: str, follower: str) -> None:
        """Send ``follower`` what it lacks of ``channel`` now: an install first, then appends."""
        self.feed.replicate(channel, follower)

    def commit(self, rep: ChannelReplica, pubs: list[Publication]) -> None:
        """``pubs`` became visible: wake their publishes and push them to the edges."""
        if not pubs or rep.stream is None:
            return
        self._waiting.committed(rep.channel, rep.stream.committed)
        self._on_commit(rep.channel, pubs)

    def step_down(self, channel: str, term: int, leader: str | None) -> None:
        rep = self.replicas.get(channel)
        if rep is None:
            return
        was_leader = rep.is_leader
        rep.step_down(term, leader)
        if was_leader:
            self.after_step_down(channel, leader)

    def after_step_down(self, channel: str, leader: str | None) -> None:
        self.persistence.stepped_down(channel)
        log.warning("no longer leading %s (leader now %s)", channel, leader or "unknown")
        self._waiting.fail(channel, temporary("leadership changed; retry"))
        self._on_step_down(channel, leader)

    async def wait_commit(self, rep: ChannelReplica, offset: int) -> None:
        """Until ``offset`` is committed; a temporary error past the replication timeout."""
        if rep.stream is not None and rep.stream.committed >= offset:
            return
        if not await self._waiting.wait(
            rep.channel, offset, self.config.origin.replication_timeout
        ):
            raise temporary(f"fewer than {rep.min_copies} shards hold it; retry")

    def leading(self) -> int:
        return sum(1 for rep in self.replicas.values() if rep.is_leader)
