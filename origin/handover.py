"""A stopping shard hands its leaderships to caught-up replicas before it exits (SIGTERM), so a
rolling restart moves each channel once, on purpose, instead of waiting for a failover.

The stopping shard leads nothing new (``Replicator.draining``: requests are redirected), waits
until the chosen successor holds the whole stream, steps down (its edges are told where the
channel went) and asks the successor to take over. The successor stops counting the stopping
shard as up and claims the channel as it would after a failure, with every copy current.

What belongs here: the order of those steps, on both sides. What never does: HTTP, or the claim
itself (``origin.replication``).
"""

from __future__ import annotations

import asyncio
import logging

from skyrelay.link import wire
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator

log = logging.getLogger("skyrelay.origin.handover")

# Seconds between looks at whether the successor holds the whole stream.
CATCH_UP_POLL = 0.01


async def hand_over(replicator: Replicator, within: float) -> tuple[int, int]:
    """Hand every leadership to a successor within ``within`` seconds; (handed over, left to
    fail over)."""
    replicator.draining = True
    leading = [rep for rep in replicator.replicas.values() if rep.is_leader]
    if not leading:
        return 0, 0
    deadline = asyncio.get_running_loop().time() + within
    results = await asyncio.gather(*(_hand_one(replicator, rep, deadline) for rep in leading))
    done = sum(results)
    log.info("handed over %d of %d leaderships", done, len(leading))
    return done, len(leading) - done


async def _hand_one(replicator: Replicator, rep: ChannelReplica, deadline: float) -> bool:
    loop = asyncio.get_running_loop()
    successor = _successor(replicator, rep)
    if successor is None or rep.stream is None:
        return False
    progress = rep.followers[successor]
    while progress.match < rep.stream.top or progress.installing:
        if loop.time() >= deadline or not rep.is_leader:
            return False
        await asyncio.sleep(CATCH_UP_POLL)
    channel = rep.channel
    replicator.step_down(channel, rep.term, successor)
    params = {"ch": channel, "from": replicator.id}
    answer = await replicator.ask(
        successor, wire.OP_TAKE_OVER, params, max(0.1, deadline - loop.time())
    )
    return answer is not None


def _successor(replicator: Replicator, rep: ChannelReplica) -> str | None:
    """The first member, in ring order, that is reachable and follows this stream."""
    for member in replicator.members(rep.channel):
        if member != replicator.id and member in rep.followers and replicator.reachable(member):
            return member
    return None


async def take_over(replicator: Replicator, channel: str, stopping: str) -> None:
    """The successor's side: the stopping shard no longer counts as up; lead the channel."""
    if stopping and stopping != replicator.id:
        replicator.health.lost(stopping)
    await replicator.lead(channel)
