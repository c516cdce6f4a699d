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
import orjson

# Seconds of difference in uptime that still count as one cluster start (processes of a
# cluster that starts together come up within a few seconds of each other).
START_GRACE = 2.0
# How long a starting shard keeps asking its peers for their uptime, in seconds.
ASK_FOR = 5.0
# Seconds between rounds of asking.
ASK_EVERY = 0.25


def joined_running(my_uptime: float, peer_uptimes: list[float]) -> bool:
    """True when some peer was up well before this shard: the cluster ran without it."""
    return any(uptime > my_uptime + START_GRACE for uptime in peer_uptimes)


async def peer_uptimes(
    session: aiohttp.ClientSession, urls: Mapping[str, str], tls: ssl.SSLContext | bool
) -> dict[str, float]:
    """Each reachable peer's uptime from its ``/status?channels=0``."""

    async def one(url: str) -> float | None:
        try:
            async with session.get(
                f"{url}/status?channels=0", timeout=aiohttp.ClientTimeout(total=1.0), ssl=tls
            ) as resp:
                body = orjson.loads(await resp.read())
                return float(body["uptime"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, OSError):
            return None

    ids = list(urls)
    answers = await asyncio.gather(*(one(urls[i]) for i in ids))
    return {i: a for i, a in zip(ids, answers, strict=True) if a is not None}
