"""Whether a shard is safe to count on: it holds current copies of the channels it replicates.

A shard asks each peer that is up which channels that peer leads with this shard as a member,
and at which term and commit point (``led``). Its copy of each is current when it was taken
under that term and reaches that commit point. Until every peer's channels are current (and the
links are up), ``/ready`` answers 503: a rolling restart that waits for ``/ready`` before the
next shard never takes away a copy that a commit still needs.

What belongs here: the question to peers and the comparison. What never does: HTTP, or how
copies catch up (the leaders replicate to a peer as soon as its link comes back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator
from skyrelay.protocol.codes import ReplyError
from skyrelay.ring.health import HealthView

log = logging.getLogger("skyrelay.origin.readiness")

# Seconds between checks while behind, and while current (a shard can fall behind later: a
# slow disk, a long pause).
CHECK_BEHIND = 0.2
CHECK_CURRENT = 1.0
# Seconds one peer may take to answer.
ASK_TIMEOUT = 2.0


def led_by_me(replicator: Replicator, member: str) -> dict[str, list[int]]:
    """The channels this shard leads with ``member`` among their followers: [term, committed]."""
    out: dict[str, list[int]] = {}
    for channel, rep in replicator.replicas.items():
        if rep.is_leader and rep.stream is not None and member in rep.followers:
            out[channel] = [rep.term, rep.stream.committed]
    return out


def behind(replicas: Mapping[str, ChannelReplica], led: Mapping[str, Any]) -> list[str]:
    """The channels of a peer's ``led`` answer whose copy here is not current."""
    stale = []
    for channel, position in led.items():
        term, committed = int(position[0]), int(position[1])
        rep = replicas.get(channel)
        stream = rep.stream if rep is not None else None
        if rep is None or stream is None or rep.accepted_term != term or stream.top < committed:
            stale.append(channel)
    return stale


@dataclass
class Readiness:
    """The last check's outcome: channels not current yet, by the peer that leads them."""

    behind: dict[str, int] = field(default_factory=dict)
    checked: bool = False

    @property
    def current(self) -> bool:
        return self.checked and not any(self.behind.values())


async def check(
    replicator: Replicator,
    links: Mapping[str, LinkClient],
    health: HealthView,
    stale: dict[str, list[str]],
) -> dict[str, int]:
    """Ask every peer that is up; how many of its channels are not current here (-1: not
    known yet, its link is still connecting or it did not answer).

    ``stale`` holds, by peer, the channels found behind last time; they are sent along as
    ``resync``, and the leader installs them afresh. Without traffic a leader has nothing new to
    append, and a copy cut short (a damaged log) would otherwise stay behind for good."""
    peers = [i for i, link in links.items() if health.is_up(i) and link.is_up]
    answers = await asyncio.gather(
        *(
            links[i].call(
                wire.OP_LED, {"member": replicator.id, "resync": stale.get(i, [])}, ASK_TIMEOUT
            )
            for i in peers
        ),
        return_exceptions=True,
    )
    counts = {i: -1 for i, link in links.items() if health.is_up(i) and not link.is_up}
    stale.clear()
    for peer, answer in zip(peers, answers, strict=True):
        if isinstance(answer, ReplyError | TimeoutError | ConnectionError):
            counts[peer] = -1  # unknown: not ready
        elif isinstance(answer, BaseException):
            raise answer
        else:
            stale[peer] = behind(replicator.replicas, answer.get("channels", {}))
            counts[peer] = len(stale[peer])
    return counts


def resync(replicator: Replicator, member: str, channels: Any) -> None:
    """The leader's side: install these channels afresh on ``member``."""
    if not isinstance(channels, list):
        return
    for channel in channels:
        rep = replicator.replicas.get(channel) if isinstance(channel, str) else None
        progress = rep.followers.get(member) if rep is not None and rep.is_leader else None
        if progress is not None and not progress.installing:
            progress.sent = None
            replicator.replicate(channel, member)


async def keep_checking(
    readiness: Readiness,
    replicator: Replicator,
    links: dict[str, LinkClient],
    health: HealthView,
) -> None:
    stale: dict[str, list[str]] = {}
    while True:
        counts = await check(replicator, links, health, stale)
        was = readiness.current
        readiness.behind, readiness.checked = counts, True
        if readiness.current != was:
            log.info("copies %s", "current" if readiness.current else f"behind: {counts}")
        await asyncio.sleep(CHECK_CURRENT if readiness.current else CHECK_BEHIND)
