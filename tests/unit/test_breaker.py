"""The backend circuit breaker, with a hand-held clock."""

from __future__ import annotations

from skyrelay.edge.breaker import Breaker, BreakerState


def test_it_opens_after_failures_in_a_row_and_refuses_at_once() -> None:
    breaker = Breaker(3, 5.0)
    for _ in range(2):
        assert breaker.allow(0.0)
        breaker.failed(0.0)
    assert breaker.allow(0.0)
    breaker.succeeded()  # a success in between starts the count again
    for _ in range(3):
        assert breaker.allow(1.0)
        breaker.failed(1.0)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(2.0) and not breaker.allow(5.9)
    assert breaker.refused == 2


def test_after_the_period_one_trial_decides() -> None:
    breaker = Breaker(1, 5.0)
    breaker.failed(0.0)
    assert breaker.allow(5.0)  # the trial
    assert not breaker.allow(5.0)  # and only it
    breaker.failed(5.1)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(10.0)
    assert breaker.allow(10.1)
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED and breaker.allow(10.2)
