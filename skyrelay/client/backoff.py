"""Reconnect delays: capped exponential backoff with full jitter (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int, low: float, high: float, draw: Callable[[float, float], float] = random.uniform
) -> float:
    """The delay before attempt ``attempt`` (0 = the first after a drop): a random time in
    [0, min(high, low * 2**attempt)]. Full jitter spreads clients that lost their edge at the
    same moment over the whole window, so they do not come back as one wave."""
    ceiling = min(high, low * 2 ** min(attempt, 32))
    return draw(0.0, ceiling)
