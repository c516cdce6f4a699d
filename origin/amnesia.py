"""Whether this shard restarted into a running cluster, and so forgot what it held.

Streams live in memory: a shard that restarts comes back empty. Its empty copy of a channel
must not count toward a claim's quorum as if it knew the channel was empty, or two shards that
restarted together could elect each other and drop what the third one holds. So a shard that
joins a cluster whose other members have been up longer calls itself *amnesiac* for the
channels it holds nothing of, until anything it could have held has expired anyway.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp

from skyrelay.config import ClusterConfig
from skyrelay.ring.prober import shard_summary

# Seconds of difference in uptime that still count as one cluster start (processes of a
# cluster that starts together come up within a few seconds of each other).
START_GRACE = 2.0
# How long a starting shard keeps asking its peers for their uptime, in seconds.
ASK_FOR = 5.0
# Seconds between rounds of asking, and how long one answer may take.
ASK_EVERY = 0.25
ASK_TIMEOUT = 1.0


def still_amnesiac(config: ClusterConfig, booted: float, joined: bool | None, now: float) -> bool:
    """Whether a shard that holds nothing of a channel must not count its empty copy: it may
    have joined a running cluster (``joined`` None: not known yet) and what it could have
    held has not expired yet (the longest history TTL, or the idempotency window)."""
    if joined is False:
        return False
    window = max([ns.history_ttl for ns in config.namespaces.values()])
    return now < booted + max(window, config.origin.idempotency_window)


def joined_running(my_uptime: float, peer_uptimes: list[float]) -> bool:
    """True when some peer was up well before this shard: the cluster ran without it."""
    return any(uptime > my_uptime + START_GRACE for uptime in peer_uptimes)


async def peer_uptimes(
    session: aiohttp.ClientSession, urls: Mapping[str, str], tls: ssl.SSLContext | bool
) -> dict[str, float]:
    """Each reachable peer's uptime from its status summary."""
    ids = list(urls)
    answers = await asyncio.gather(
        *(shard_summary(session, urls[i], ASK_TIMEOUT, tls) for i in ids)
    )
    uptimes: dict[str, float] = {}
    for shard_id, summary in zip(ids, answers, strict=True):
        uptime = (summary or {}).get("uptime")
        if isinstance(uptime, int | float):
            uptimes[shard_id] = float(uptime)
    return uptimes
