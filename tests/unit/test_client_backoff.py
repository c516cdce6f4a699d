"""The client's reconnect backoff."""

from __future__ import annotations

import random

from skyrelay.client.backoff import backoff_delay


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    assert backoff_delay(0, 0.5, 20, lambda lo, hi: hi) == 0.5
    assert backoff_delay(3, 0.5, 20, lambda lo, hi: hi) == 4.0
    assert backoff_delay(50, 0.5, 20, lambda lo, hi: hi) == 20.0
    assert backoff_delay(3, 0.5, 20, lambda lo, hi: lo) == 0.0
    rng = random.Random(7)
    draws = [backoff_delay(0, 1.0, 20, rng.uniform) for _ in range(1000)]
    assert 0 <= min(draws) < 0.05 and 0.95 < max(draws) <= 1.0
