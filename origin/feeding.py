"""The leader side of replication: sending each follower what it lacks (an install first, then
appends) and acting on its answers.

Appends are pipelined and batched: a publication is sent as soon as it is ordered, without
waiting for the previous answer, and every channel's appends to one follower in one loop turn
travel as one request (link op ``appends``). Installs go alone: they are rare and large.

What belongs here: what to send to which follower, and what an answer means for its progress.
What never does: the rules of terms and commits (``origin.replica``), or claims.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any, Protocol

from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.stream import Publication
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.ring.health import HealthView
from skyrelay.runtime.tasks import spawn

Answer = dict[str, Any] | ReplyError


class Leader(Protocol):
    """What feeding needs of the replication driver."""

    id: str
    replicas: dict[str, ChannelReplica]
    links: Mapping[str, LinkClient]
    health: HealthView

    def reachable(self, shard_id: str) -> bool: ...
    def members(self, channel: str) -> list[str]: ...
    def commit(self, rep: ChannelReplica, pubs: list[Publication]) -> None: ...
    def step_down(self, channel: str, term: int, leader: str | None) -> None: ...
    async def try_lead(self, channel: str) -> None: ...


class Feed:
    __slots__ = ("_leader", "_unsent")

    def __init__(self, leader: Leader) -> None:
        self._leader = leader
        # Channels with publications ordered this loop turn, not sent to followers yet.
        self._unsent: set[str] = set()

    def soon(self, channel: str) -> None:
        """Send ``channel``'s followers what they lack at the end of this loop turn."""
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._send_unsent)
        self._unsent.add(channel)

    def _send_unsent(self) -> None:
        unsent, self._unsent = self._unsent, set()
        batches: dict[str, list[tuple[ChannelReplica, dict[str, Any]]]] = {}
        for channel in unsent:
            rep = self._leader.replicas.get(channel)
            if rep is None:
                continue
            for follower in rep.followers:
                params = self._next(rep, follower)
                if params is not None:
                    batches.setdefault(follower, []).append((rep, params))
        for follower, batch in batches.items():
            items = [params for _, params in batch]
            future = self._leader.links[follower].call(wire.OP_APPENDS, {"items": items})
            future.add_done_callback(functools.partial(self._spread, follower, batch))

    def replicate(self, channel: str, follower: str) -> None:
        """Send ``follower`` what it lacks of ``channel`` now."""
        rep = self._leader.replicas.get(channel)
        if rep is None:
            return
        params = self._next(rep, follower)
        if params is not None:
            self._send(rep, follower, wire.OP_APPEND, params)

    def _next(self, rep: ChannelReplica, follower: str) -> dict[str, Any] | None:
        """The append ``follower`` needs (None: nothing, or an install was sent instead)."""
        if not rep.is_leader or rep.stream is None:
            return None
        progress = rep.followers.get(follower)
        if progress is None or progress.installing:
            return None
        if not self._leader.reachable(follower):
            progress.sent = progress.match  # when it is back: from what it confirmed
            return None
        stream = rep.stream
        base = {"ch": rep.channel, "term": rep.term, "from": self._leader.id}
        records = None if progress.sent is None else stream.records_after(progress.sent)
        if records is None:
            progress.installing = True
            progress.sent = stream.top
            self._send(rep, follower, wire.OP_INSTALL, {**base, "state": stream.snapshot()})
            return None
        if not records:
            return None
        prev, progress.sent = progress.sent, stream.top
        return {**base, "prev": prev, "pubs": records, "commit": stream.committed}

    def _send(self, rep: ChannelReplica, follower: str, op: str, params: dict[str, Any]) -> None:
        future = self._leader.links[follower].call(op, params)
        term = rep.term

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            self._answered(rep, follower, term, op, _answer(f))

        future.add_done_callback(done)

    def _spread(
        self,
        follower: str,
        batch: list[tuple[ChannelReplica, dict[str, Any]]],
        future: asyncio.Future[dict[str, Any]],
    ) -> None:
        answer = _answer(future)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            results = [answer if isinstance(answer, ReplyError) else _malformed()] * len(batch)
        for (rep, params), result in zip(batch, results, strict=True):
            self._answered(rep, follower, params["term"], wire.OP_APPEND, _item(result))

    def _answered(
        self, rep: ChannelReplica, follower: str, term: int, op: str, answer: Answer
    ) -> None:
        if not rep.is_leader or rep.term != term:
            return
        progress = rep.followers.get(follower)
        if progress is None:
            return
        if isinstance(answer, ReplyError):
            # Lost or late: resend from what it confirmed (it skips what it already holds).
            progress.sent = progress.match
            progress.installing = False
            return
        if op == wire.OP_INSTALL:
            progress.installing = False
        if answer.get("ok"):
            self._leader.commit(rep, rep.on_ack(follower, int(answer.get("top", 0))))
            if op == wire.OP_INSTALL:  # what was ordered during the install follows now
                self.replicate(rep.channel, follower)
        elif answer.get("install"):
            progress.sent = None
            self.replicate(rep.channel, follower)
        elif int(answer.get("term", 0)) > rep.term:
            # A member promised a higher term: a newer claim, or a restarted member whose
            # terms start at its boot time. Stop leading; claim again if we should lead.
            self._leader.step_down(rep.channel, int(answer["term"]), None)
            if self._leader.health.first_up(self._leader.members(rep.channel)) == self._leader.id:
                spawn(self._leader.try_lead(rep.channel))


def _answer(future: asyncio.Future[dict[str, Any]]) -> Answer:
    if future.cancelled():
        return ReplyError(ErrorCode.INTERNAL, "cancelled", True)
    error = future.exception()
    if isinstance(error, ReplyError):
        return error
    if error is not None:
        raise error
    return future.result()


def _item(result: Any) -> Answer:
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        return ReplyError.from_body(result["error"])
    if isinstance(result, dict | ReplyError):
        return result
    return _malformed()


def _malformed() -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, "malformed answer from a follower", True)
