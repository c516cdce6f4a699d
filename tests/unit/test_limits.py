"""The publish rate limit: a token bucket with an explicit clock."""

from __future__ import annotations

from skyrelay.edge.limits import TokenBucket


def test_a_burst_is_allowed_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # half a second buys one token at 2/s
    assert not bucket.take(0.5)


def test_idle_time_saves_up_to_the_burst_only() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]


def test_a_clock_that_goes_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.5)
    assert bucket.take(6.5)


def test_the_burst_is_at_least_one() -> None:
    assert TokenBucket(rate=0.1, burst=0, now=0.0).take(0.0)
