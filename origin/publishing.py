"""Publishing at a channel's leader: order the publication, replicate it, and ack it once
``min_copies`` shards hold it. A retry with an idempotency key already held gets the first
publication's answer instead of a second one."""

from __future__ import annotations

from typing import Any

from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator, temporary
from skyrelay.origin.stream import Publication


async def publish(
    replicator: Replicator,
    channel: str,
    data: Any,
    now: float,
    *,
    info: dict[str, Any] | None,
    tags: dict[str, str] | None,
    ikey: str | None,
) -> tuple[ChannelReplica, Publication]:
    """Order, replicate and wait until ``min_copies`` hold it; then it is acked."""
    rep = await replicator.lead(channel)
    stream = rep.stream
    assert stream is not None
    if ikey is not None:
        earlier = stream.find_ikey(ikey)
        if (
            earlier is not None
            and earlier.time / 1000 + replicator.config.origin.idempotency_window > now
        ):
            await replicator.wait_commit(rep, earlier.offset)
            return rep, earlier
    if stream.pending >= max(1, stream.size):
        raise temporary("replication is behind; retry")
    pub = rep.propose(data, now, info=info, tags=tags, ikey=ikey)
    replicator.persistence.proposed(rep, pub)
    replicator.commit(rep, rep.advance_commit())
    for follower in rep.followers:
        replicator.replicate(channel, follower)
    await replicator.wait_commit(rep, pub.offset)
    return rep, pub
