"""What edges and shards ask of shards over HTTP: active health checks (GET /health on every
shard, every interval, into a HealthView) and a shard's status summary."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from skyrelay.ring.health import HealthView

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


async def shard_summary(
    session: aiohttp.ClientSession, url: str, limit: float, tls: ssl.SSLContext | bool = True
) -> dict[str, Any] | None:
    """A shard's ``/status?channels=0`` (role counts, uptime, takeovers); None when it does not
    answer in ``limit`` seconds or answers nonsense."""
    try:
        async with session.get(
            f"{url.rstrip('/')}/status?channels=0",
            timeout=aiohttp.ClientTimeout(total=limit),
            ssl=tls,
        ) as resp:
            if resp.status != 200:
                return None
            body = orjson.loads(await resp.read())
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


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
