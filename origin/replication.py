"""Leadership and replication of channels between shards (the async driver of ``replica``).

Claims, installs and appends go over the same links the edges use. Appends are pipelined: each
one is sent as soon as the publication is ordered, without waiting for the previous answer,
and the link batches whatever is queued in one loop turn into one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from origin.replica import ChannelReplica, Role, best_state, election_quorum
from origin.stream import Publication
from ring import Ring
from ring.health import HealthView
from skyrelay.config import ClusterConfig
from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.runtime.tasks import spawn

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


class _Ballot:
    """One round of a claim: who granted the term, whose copy counts, the highest term a
    refusal named."""

    __slots__ = ("asked_for", "granted", "granters", "higher", "informed", "members", "previous")

    def __init__(
        self,
        members: list[str],
        previous: list[str],
        asked_for: list[str],
        own_id: str,
        amnesiac: bool,
    ) -> None:
        self.members = members
        self.previous = previous
        self.asked_for = asked_for
        self.granted: list[tuple[int, dict[str, Any] | None]] = []
        self.granters = {own_id}
        # Granters whose copy counts: not empty after a restart into a running cluster.
        self.informed: set[str] = set() if amnesiac else {own_id}
        self.higher = 0

    def count(self, member: str, answer: dict[str, Any] | None) -> None:
        if answer is None:
            return
        if answer.get("granted"):
            self.granted.append((int(answer.get("accepted_term", 0)), answer.get("state")))
            self.granters.add(member)
            if not answer.get("amnesiac"):
                self.informed.add(member)
        else:
            self.higher = max(self.higher, int(answer.get("term", 0)))

    def won(self, quorum_met: Callable[[set[str], list[str]], bool]) -> bool:
        if quorum_met(self.informed, self.members) and quorum_met(self.informed, self.previous):
            return True
        # Too few members remember the channel: only every member's copy shows all that is
        # left of it.
        return self.granters >= set(self.asked_for)


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
        self._claims: dict[str, asyncio.Future[None]] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        # Terms start at boot time: a restarted shard never re-grants a term it promised.
        self.boot_term = now_ms()
        self.booted = time.time()
        # Whether this shard restarted into a running cluster (see origin/amnesia.py); None
        # until it has asked its peers, and meanwhile it assumes the worst.
        self.joined_running: bool | None = None
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
            ns = self.config.namespace(channel)
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
        """This shard holds nothing of the channel and may have forgotten it in a restart:
        until what it could have held has expired, its empty copy proves nothing."""
        if rep.stream is not None or rep.accepted_term or self.joined_running is False:
            return False
        namespaces = self.config.namespaces.values()
        window = max(
            [ns.history_ttl for ns in namespaces] + [self.config.origin.idempotency_window]
        )
        return time.time() < self.booted + window

    def _reachable(self, shard_id: str) -> bool:
        link = self.links.get(shard_id)
        return self.health.is_up(shard_id) and link is not None and link.is_up

    # Leadership.

    async def lead(self, channel: str) -> ChannelReplica:
        """This shard's replica of ``channel``, leading; or NOT_LEADER naming who should."""
        rep = self.replica(channel)
        if rep.is_leader:
            if rep.stream is not None and rep.stream.committed < rep.adopted_top:
                await self._wait_commit(rep, rep.adopted_top)
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
        await self._wait_commit(rep, rep.adopted_top)
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
            ballot = _Ballot(members, previous, asked_for, self.id, self.amnesiac(rep))
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
        self, ballot: _Ballot, channel: str, term: int, others: list[str], limit: float
    ) -> None:
        """Ask ``others`` for ``term``; stop at the first quorum of grants: a member that
        hangs (paused, partitioned) must not hold the takeover up until its timeout."""
        params = {"ch": channel, "term": term, "from": self.id}
        pending = {
            asyncio.ensure_future(self._ask(m, wire.OP_CLAIM, params, limit)): m for m in others
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
        self._commit(rep, rep.advance_commit())
        for follower in rep.followers:
            self.replicate(channel, follower)

    async def _reclaim(self, channel: str) -> None:
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
            others = [m for m in members if m != self.id and self._reachable(m)]
            if enough({self.id, *others}) or loop.time() >= deadline:
                return others
            await asyncio.sleep(LINK_WAIT_POLL)

    async def _ask(
        self, shard_id: str, op: str, params: dict[str, Any], limit: float
    ) -> dict[str, Any] | None:
        try:
            return await self.links[shard_id].call(op, params, limit)
        except ReplyError:
            return None

    # Replication (leader side).

    def replicate(self, channel: str, follower: str) -> None:
        """Send the follower what it lacks: an install first, then appends."""
        rep = self.replicas.get(channel)
        if rep is None or not rep.is_leader or rep.stream is None:
            return
        progress = rep.followers.get(follower)
        if progress is None or progress.installing:
            return
        if not self._reachable(follower):
            progress.sent = None
            return
        stream = rep.stream
        base = {"ch": channel, "term": rep.term, "from": self.id}
        records = None if progress.sent is None else stream.records_after(progress.sent)
        if records is None:
            progress.installing = True
            progress.sent = stream.top
            self._send(rep, follower, wire.OP_INSTALL, {**base, "state": stream.snapshot()})
        elif records:
            prev, progress.sent = progress.sent, stream.top
            params = {**base, "prev": prev, "pubs": records, "commit": stream.committed}
            self._send(rep, follower, wire.OP_APPEND, params)

    def _send(self, rep: ChannelReplica, follower: str, op: str, params: dict[str, Any]) -> None:
        future = self.links[follower].call(op, params)
        term = rep.term
        future.add_done_callback(lambda f: self._answered(rep, follower, term, op, f))

    def _answered(
        self,
        rep: ChannelReplica,
        follower: str,
        term: int,
        op: str,
        future: asyncio.Future[dict[str, Any]],
    ) -> None:
        if not rep.is_leader or rep.term != term:
            if not future.cancelled():
                future.exception()  # retrieved, nothing to do
            return
        progress = rep.followers.get(follower)
        if progress is None:
            return
        try:
            answer = future.result()
        except ReplyError:
            progress.sent = None  # resend everything (an install) when it is back
            progress.installing = False
            return
        if op == wire.OP_INSTALL:
            progress.installing = False
        if answer.get("ok"):
            self._commit(rep, rep.on_ack(follower, int(answer.get("top", 0))))
            self.replicate(rep.channel, follower)
        elif answer.get("install"):
            progress.sent = None
            self.replicate(rep.channel, follower)
        elif int(answer.get("term", 0)) > rep.term:
            # A member promised a higher term: a newer claim, or a restarted member whose
            # terms start at its boot time. Stop leading; claim again if we should lead.
            self.step_down(rep.channel, int(answer["term"]), None)
            if self.health.first_up(self.members(rep.channel)) == self.id:
                spawn(self._reclaim(rep.channel))

    def _commit(self, rep: ChannelReplica, pubs: list[Publication]) -> None:
        if not pubs or rep.stream is None:
            return
        committed = rep.stream.committed
        waiters = self._waiters.get(rep.channel)
        if waiters:
            still = []
            for offset, future in waiters:
                if offset <= committed:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((offset, future))
            self._waiters[rep.channel] = still
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
        log.warning("no longer leading %s (leader now %s)", channel, leader or "unknown")
        for _, future in self._waiters.pop(channel, []):
            if not future.done():
                future.set_exception(temporary("leadership changed; retry"))
        self._on_step_down(channel, leader)

    # Publishing.

    async def publish(
        self,
        channel: str,
        data: Any,
        now: float,
        *,
        info: dict[str, Any] | None,
        tags: dict[str, str] | None,
        ikey: str | None,
    ) -> tuple[ChannelReplica, Publication]:
        """Order, replicate and wait until ``min_copies`` hold it; then it is acked."""
        rep = await self.lead(channel)
        stream = rep.stream
        assert stream is not None
        if ikey is not None:
            earlier = stream.find_ikey(ikey)
            if (
                earlier is not None
                and earlier.time / 1000 + self.config.origin.idempotency_window > now
            ):
                await self._wait_commit(rep, earlier.offset)
                return rep, earlier
        if stream.pending >= max(1, stream.size):
            raise temporary("replication is behind; retry")
        pub = rep.propose(data, now, info=info, tags=tags, ikey=ikey)
        self._commit(rep, rep.advance_commit())
        for follower in rep.followers:
            self.replicate(channel, follower)
        await self._wait_commit(rep, pub.offset)
        return rep, pub

    async def _wait_commit(self, rep: ChannelReplica, offset: int) -> None:
        if rep.stream is not None and rep.stream.committed >= offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rep.channel, []).append((offset, future))
        try:
            await asyncio.wait_for(future, self.config.origin.replication_timeout)
        except TimeoutError:
            raise temporary(f"fewer than {rep.min_copies} shards hold it; retry") from None

    # Replication (follower side): requests from other shards.

    def on_peer(self, op: str, message: dict[str, Any]) -> dict[str, Any]:
        channel = str(message["ch"])
        term = int(message["term"])
        sender = str(message["from"])
        rep = self.replica(channel)
        was_leader = rep.is_leader
        if op == wire.OP_CLAIM:
            amnesiac = self.amnesiac(rep)
            answer = rep.on_claim(term, sender)
            if amnesiac and answer.get("granted"):
                answer["amnesiac"] = True
        elif op == wire.OP_APPEND:
            answer = rep.on_append(
                term,
                sender,
                int(message["prev"]),
                list(message.get("pubs") or []),
                int(message.get("commit", 0)),
            )
        else:
            answer = rep.on_install(term, sender, dict(message["state"]))
        if was_leader and not rep.is_leader:
            self.after_step_down(channel, sender)
        return answer

    # Membership changes.

    def clear_history(self, rep: ChannelReplica) -> None:
        """history_remove: drop the publications, keep the position, on every replica (each
        follower gets a fresh install of the emptied stream)."""
        if rep.stream is None:
            return
        rep.stream.clear()
        for follower, progress in rep.followers.items():
            progress.sent = None
            progress.installing = False
            self.replicate(rep.channel, follower)

    def peer_changed(self, shard_id: str, up: bool) -> None:
        """A shard came back (or went away): bring it up to date where we lead."""
        for channel, rep in self.replicas.items():
            progress = rep.followers.get(shard_id) if rep.is_leader else None
            if progress is None:
                continue
            progress.sent = None
            progress.installing = False
            if up:
                self.replicate(channel, shard_id)

    def reconfigure(self, ring: Ring) -> None:
        """A new ring (shards added or removed): channels whose replica set changed move.

        A leader that is no longer the channel's preferred shard steps down (its edges follow
        the new leader) and nudges the new one, which claims the channel with a quorum of its
        old and its new members, and so takes its history along.
        """
        self.prev_ring, self.ring = self.ring, ring
        for channel, rep in list(self.replicas.items()):
            before = list(self.prev_ring.replicas(channel))
            after = list(ring.replicas(channel))
            if before == after:
                continue
            rep.min_copies = min(self.config.effective_min_copies, len(after))
            if not rep.is_leader:
                continue
            preferred = self.health.first_up(after)
            rep.step_down(rep.term, preferred)
            self.after_step_down(channel, preferred)
            if preferred == self.id:
                spawn(self._reclaim(channel))
            elif preferred is not None:
                spawn(self._nudge(preferred, channel))

    async def _nudge(self, shard_id: str, channel: str) -> None:
        link = self.links.get(shard_id)
        if link is not None:
            await self._ask(shard_id, wire.OP_READ, {"ch": channel, "limit": 0}, 5.0)

    def leading(self) -> int:
        return sum(1 for rep in self.replicas.values() if rep.is_leader)
