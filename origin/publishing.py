"""Publishing at a channel's leader: order the publications, replicate them, and ack them once
``min_copies`` shards hold them. The publications of one channel that arrive together (one
link frame, one ``pubs`` request) are ordered together and wait for one commit. A retry with an
idempotency key already held gets the first publication's answer instead of a second one.

What belongs here: publish requests, from validation to answers. What never does: links or
sockets (``origin.link``), replication itself (``origin.replication``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skyrelay.link import wire
from skyrelay.origin.metrics import OriginMetrics
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator, temporary
from skyrelay.origin.stream import Publication
from skyrelay.protocol.codes import ErrorCode, ReplyError

Outcome = dict[str, Any] | ReplyError


@dataclass(frozen=True, slots=True)
class Proposal:
    """One publication to order."""

    data: Any
    info: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    ikey: str | None = None
    # Send it as a patch to delta subscribers.
    delta: bool = False


async def publish_all(
    replicator: Replicator, channel: str, proposals: list[Proposal], now: float
) -> tuple[ChannelReplica, list[Publication | ReplyError]]:
    """Each proposal's publication (or why it failed), in order, once all are committed."""
    rep = await replicator.lead(channel)
    stream = rep.stream
    assert stream is not None
    window = replicator.config.origin.idempotency_window
    outcomes: list[Publication | ReplyError] = []
    proposed: list[Publication] = []
    highest = 0
    for proposal in proposals:
        earlier = stream.find_ikey(proposal.ikey) if proposal.ikey is not None else None
        if earlier is not None and earlier.time / 1000 + window > now:
            pub = earlier
        elif stream.pending >= max(1, stream.size):
            outcomes.append(temporary("replication is behind; retry"))
            continue
        else:
            pub = rep.propose(
                proposal.data, now, info=proposal.info, tags=proposal.tags, ikey=proposal.ikey
            )
            pub.delta = proposal.delta
            proposed.append(pub)
        outcomes.append(pub)
        highest = max(highest, pub.offset)
    if proposed:
        replicator.persistence.proposed(rep, proposed)
    replicator.commit(rep, rep.advance_commit())
    replicator.replicate_soon(channel)
    try:
        await replicator.wait_commit(rep, highest)
    except ReplyError as exc:
        outcomes = [exc if isinstance(o, Publication) else o for o in outcomes]
    return rep, outcomes


class Publisher:
    """Publish requests at this shard: alone (``pub``), or many at once (a frame's ``pub``
    requests, a ``pubs`` request)."""

    def __init__(
        self,
        replicator: Replicator,
        metrics: OriginMetrics,
        push_unkept: Callable[[str, Publication], None],
    ) -> None:
        self.replicator = replicator
        self.metrics = metrics
        self._push_unkept = push_unkept

    def unkept(self, channel: str, message: dict[str, Any]) -> bool:
        """Not kept in history (``skip_history``, or a namespace without history)."""
        ns = self.replicator.config.namespace(channel)
        return bool(message.get("skip_history")) or (ns is not None and ns.history_size == 0)

    def batchable(self, message: dict[str, Any]) -> bool:
        """A ``pub`` request that can be ordered together with others of its channel."""
        channel = message.get("ch")
        return (
            message.get("op") == wire.OP_PUB
            and isinstance(channel, str)
            and isinstance(message.get("id"), int)
            and not self.unkept(channel, message)
        )

    async def publish_one(
        self, channel: str, message: dict[str, Any], now: float
    ) -> dict[str, Any]:
        if self.unkept(channel, message):
            start = time.perf_counter()
            try:
                proposal = proposal_of(message)
                # Not kept, so nothing to replicate: order it on the leader and push it.
                await self.replicator.lead(channel)
            except ReplyError as exc:
                self._measure([exc], 0.0)
                raise
            pub = Publication(
                0, proposal.data, int(now * 1000), proposal.info, proposal.tags, received=now
            )
            self._push_unkept(channel, pub)
            self._measure([{}], time.perf_counter() - start)
            return {}
        (outcome,) = await self.publish_items([{**message, "ch": channel}])
        if isinstance(outcome, ReplyError):
            raise outcome
        return outcome

    async def answer_all(self, messages: list[dict[str, Any]]) -> list[bytes]:
        """``batchable`` requests that arrived together; one answer each, as link frames."""
        outcomes = await self.publish_items(messages)
        return [
            wire.error(m["id"], o.code, o.message, o.temporary, o.leader)
            if isinstance(o, ReplyError)
            else wire.result(m["id"], o)
            for m, o in zip(messages, outcomes, strict=True)
        ]

    async def publish_items(self, items: list[dict[str, Any]]) -> list[Outcome]:
        """Publications (``ch``, ``data``, ``ikey``, ``info``, ``tags``), ordered together per
        channel; each one's answer or error, in the order given."""
        start = time.perf_counter()
        now = time.time()
        outcomes: list[Outcome] = [{} for _ in items]
        groups: dict[str, list[tuple[int, Proposal]]] = {}
        for index, item in enumerate(items):
            try:
                channel = item["ch"]
                if not isinstance(channel, str) or not channel:
                    raise ReplyError(ErrorCode.BAD_REQUEST, "ch must be a non-empty string")
                if self.unkept(channel, item):
                    raise ReplyError(ErrorCode.BAD_REQUEST, "skip_history is not batched")
                groups.setdefault(channel, []).append((index, proposal_of(item)))
            except ReplyError as exc:
                outcomes[index] = exc
            except (KeyError, TypeError, ValueError) as exc:
                outcomes[index] = ReplyError(ErrorCode.BAD_REQUEST, f"malformed request: {exc}")
        done = await asyncio.gather(
            *(self._publish_group(channel, group, now) for channel, group in groups.items())
        )
        for batch in done:
            for index, outcome in batch:
                outcomes[index] = outcome
        self._measure(outcomes, time.perf_counter() - start)
        return outcomes

    async def _publish_group(
        self, channel: str, items: list[tuple[int, Proposal]], now: float
    ) -> list[tuple[int, Outcome]]:
        try:
            rep, outcomes = await publish_all(self.replicator, channel, [p for _, p in items], now)
        except ReplyError as exc:
            return [(index, exc) for index, _ in items]
        epoch = rep.stream.epoch if rep.stream is not None else ""
        return [
            (index, o if isinstance(o, ReplyError) else {"offset": o.offset, "epoch": epoch})
            for (index, _), o in zip(items, outcomes, strict=True)
        ]

    def _measure(self, outcomes: list[Outcome], elapsed: float) -> None:
        for outcome in outcomes:
            if not isinstance(outcome, ReplyError):
                self.metrics.publish_seconds.observe(elapsed)
            elif outcome.code != wire.NOT_LEADER:
                self.metrics.publish_errors.labels(code=str(int(outcome.code))).inc()


def proposal_of(message: dict[str, Any]) -> Proposal:
    if "data" not in message:
        raise ReplyError(ErrorCode.BAD_REQUEST, "data is required")
    key = message.get("ikey")
    if key is not None and (not isinstance(key, str) or not key):
        raise ReplyError(ErrorCode.BAD_REQUEST, "idempotency_key must be a non-empty string")
    info, tags = message.get("info"), message.get("tags")
    return Proposal(
        message["data"],
        info if isinstance(info, dict) else None,
        tags if isinstance(tags, dict) else None,
        key,
        message.get("delta") is True,
    )


def outcome_body(outcome: Outcome) -> dict[str, Any]:
    """One item of a ``pubs`` answer."""
    if not isinstance(outcome, ReplyError):
        return {"result": outcome}
    error: dict[str, Any] = {"code": int(outcome.code), "message": outcome.message}
    if outcome.temporary:
        error["temporary"] = True
    if outcome.leader is not None:
        error["leader"] = outcome.leader
    return {"error": error}
