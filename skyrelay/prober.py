"""Active health checks: GET /health on every shard, every interval, into a HealthView."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping

import aiohttp

from ring.health import HealthView

log = logging.getLogger("skyrelay.health")


async def probe_once(
    session: aiohttp.ClientSession, url: str, limit: float, tls: ssl.SSLContext | bool = True
) -> bool:
    try:
        async with session.get(
            f"{url.rstrip('/')}/health", timeout=aiohttp.ClientTimeout(total=limit), ssl=tls
        ) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def run_prober(
    view: HealthView,
    urls: Callable[[], Mapping[str, str]],
    session: aiohttp.ClientSession,
    on_change: Callable[[str, bool], None],
    tls: ssl.SSLContext | bool = True,
) -> None:
    """Probe every target forever; ``on_change(shard_id, up)`` on each transition. ``tls``
    verifies https:// targets."""
    settings = view.settings
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        targets = {i: u for i, u in urls().items() if i in view.trackers}
        results = await asyncio.gather(
            *(probe_once(session, url, settings.timeout, tls) for url in targets.values())
        )
        for shard_id, ok in zip(targets, results, strict=True):
            if view.probed(shard_id, ok):
                log.warning("shard %s is %s", shard_id, "up" if ok else "down")
                on_change(shard_id, ok)
        await asyncio.sleep(max(0.0, settings.interval - (loop.time() - started)))
