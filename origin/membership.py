"""When the cluster's membership changes for a shard: a peer comes back or goes away, the ring
is reconfigured (shards added or removed), or a channel's history is removed. Each moves or
refreshes what this shard leads, through its ``Replicator``; nothing here holds state.
"""

from __future__ import annotations

from skyrelay.link import wire
from skyrelay.origin.replica import ChannelReplica
from skyrelay.origin.replication import Replicator
from skyrelay.ring import Ring
from skyrelay.runtime.tasks import spawn


def clear_history(replicator: Replicator, rep: ChannelReplica) -> None:
    """history_remove: drop the publications, keep the position, on every replica (each
    follower gets a fresh install of the emptied stream)."""
    if rep.stream is None:
        return
    rep.stream.clear()
    replicator.persistence.installed(rep)
    for follower, progress in rep.followers.items():
        progress.sent = None
        progress.installing = False
        replicator.replicate(rep.channel, follower)


def peer_changed(replicator: Replicator, shard_id: str, up: bool) -> None:
    """A shard came back (or went away): bring it up to date where we lead.

    Appends resume after what it last confirmed: a shard back from a restart with its copies on
    disk needs only the tail. One that forgot (level memory) answers that it needs an install.
    The appends of every channel travel together (``replicate_soon``)."""
    for channel, rep in replicator.replicas.items():
        progress = rep.followers.get(shard_id) if rep.is_leader else None
        if progress is None:
            continue
        progress.sent = progress.match
        progress.installing = False
        if up:
            replicator.replicate_soon(channel)


def reconfigure(replicator: Replicator, ring: Ring) -> None:
    """A new ring (shards added or removed): channels whose replica set changed move.

    A leader that is no longer the channel's preferred shard steps down (its edges follow
    the new leader) and nudges the new one, which claims the channel with a quorum of its
    old and its new members, and so takes its history along.
    """
    previous, replicator.ring = replicator.ring, ring
    replicator.prev_ring = previous
    for channel, rep in list(replicator.replicas.items()):
        before = list(previous.replicas(channel))
        after = list(ring.replicas(channel))
        if before == after:
            continue
        rep.min_copies = min(replicator.config.effective_min_copies, len(after))
        if not rep.is_leader:
            continue
        preferred = replicator.health.first_up(after)
        rep.step_down(rep.term, preferred)
        replicator.after_step_down(channel, preferred)
        if preferred == replicator.id:
            spawn(replicator.try_lead(channel))
        elif preferred is not None:
            spawn(_nudge(replicator, preferred, channel))


async def _nudge(replicator: Replicator, shard_id: str, channel: str) -> None:
    """Make ``shard_id`` claim ``channel`` now: any read there leads it."""
    if replicator.links.get(shard_id) is not None:
        await replicator.ask(shard_id, wire.OP_READ, {"ch": channel, "limit": 0}, 5.0)
