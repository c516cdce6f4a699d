"""A circuit breaker for one backend endpoint. Pure code: the caller passes the time.

Closed, it lets every call through and counts failures in a row. After ``failures`` of them it
opens: for ``seconds`` every call is refused at once (the client gets a temporary error and
retries with backoff), so a backend that is down costs the edge no pile of waiting requests
and gets no burst of retries. Then it lets one call through (half-open): success closes it,
failure opens it again for another period.
"""

from __future__ import annotations

from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # one trial call is on its way


class Breaker:
    __slots__ = ("_failed", "_opened_at", "failures", "refused", "seconds", "state")

    def __init__(self, failures: int, seconds: float) -> None:
        self.failures = failures
        self.seconds = seconds
        self.state = BreakerState.CLOSED
        self._failed = 0
        self._opened_at = 0.0
        # Calls refused while open, for the metrics.
        self.refused = 0

    def allow(self, now: float) -> bool:
        """May a call go now? (In half-open, only the one trial.)"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now - self._opened_at >= self.seconds:
            self.state = BreakerState.HALF_OPEN
            return True
        self.refused += 1
        return False

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self._failed = 0

    def failed(self, now: float) -> None:
        self._failed += 1
        if self.state is BreakerState.HALF_OPEN or self._failed >= self.failures:
            self.state = BreakerState.OPEN
            self._opened_at = now
