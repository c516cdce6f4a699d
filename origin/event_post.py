"""Posting a batch of events to the app's backend: one POST, acked by any 2xx, and the
backoff between failures.

The body is ``{"events": [...]}``; each event has ``id`` (unique, the same when it is sent
again), ``offset`` (its place in the log), ``type`` and ``time`` (ms), with ``client``,
``user``, ``channel``, ``transport``, ``code`` and ``reason`` as its type has them.

What belongs here: the request, what counts as an ack, the retry delay. What never does:
which events, or their order (``origin.event_log``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import aiohttp
import orjson

from skyrelay.config import EventsConfig
from skyrelay.origin.metrics import OriginMetrics

log = logging.getLogger("skyrelay.origin.events")


class EventPoster:
    def __init__(self, metrics: OriginMetrics) -> None:
        self.metrics = metrics
        self.failures = 0  # in a row
        self._session: aiohttp.ClientSession | None = None

    async def post(self, events: list[dict[str, Any]], config: EventsConfig) -> bool:
        """True once the backend acked the batch."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        start = time.perf_counter()
        try:
            async with self._session.post(
                config.endpoint,
                data=orjson.dumps({"events": events}),
                headers={"Content-Type": "application/json", **config.header_pairs()},
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                allow_redirects=False,
            ) as response:
                acked = 200 <= response.status < 300
                outcome = "acked" if acked else f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            acked, outcome = False, type(exc).__name__
        if not acked:
            self.failures += 1
            self.metrics.events_post_failures.inc()
            if self.failures == 1 or self.failures % 20 == 0:
                log.warning("events backend did not ack a batch (%s); retrying", outcome)
            return False
        if self.failures:
            log.info("events backend acks again after %d failures", self.failures)
        self.failures = 0
        self.metrics.events_post_seconds.observe(time.perf_counter() - start)
        for event in events:
            self.metrics.events_posted.labels(type=str(event.get("type"))).inc()
        return True

    async def back_off(self, config: EventsConfig) -> None:
        """Wait before the next try: ``retry_delay`` doubled per failure in a row, up to
        ``max_retry_delay``, with jitter so that retries never march in step."""
        delay = min(config.max_retry_delay, config.retry_delay * 2 ** max(0, self.failures - 1))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
