"""The ping wheel, with fake connections and a manual clock."""

from __future__ import annotations

import pytest

from skyrelay.edge.pinger import PingWheel


class Conn:
    def __init__(self) -> None:
        self.ping_slot = -1
        self.pings = 0
        self.checks = 0

    def ping(self) -> None:
        self.pings += 1

    def check_pong(self, now: float) -> None:
        self.checks += 1


def test_each_connection_is_pinged_once_per_interval_and_checked_after_the_timeout() -> None:
    wheel = PingWheel(interval=5, pong_timeout=2)
    conns = [Conn() for _ in range(12)]
    for c in conns:
        wheel.add(c)
    assert len(wheel) == 12
    for _ in range(5):
        wheel.tick(0.0)
    assert all(c.pings == 1 for c in conns)
    assert all(c.checks == 1 for c in conns)
    # Slots are filled round robin, so pings spread over the interval.
    assert sorted(len(s) for s in wheel.slots) == [2, 2, 2, 3, 3]


def test_every_ping_is_checked_pong_timeout_ticks_later() -> None:
    wheel = PingWheel(interval=5, pong_timeout=2)
    conns = [Conn() for _ in range(5)]
    for c in conns:
        wheel.add(c)
    ping_ticks: dict[Conn, list[int]] = {c: [] for c in conns}
    check_ticks: dict[Conn, list[int]] = {c: [] for c in conns}
    for tick in range(1, 16):
        before = {c: (c.pings, c.checks) for c in conns}
        wheel.tick(0.0)
        for c in conns:
            if c.pings > before[c][0]:
                ping_ticks[c].append(tick)
            if c.checks > before[c][1]:
                check_ticks[c].append(tick)
    for c in conns:
        assert len(ping_ticks[c]) == 3
        for tick in ping_ticks[c]:
            if tick + 2 <= 15:
                assert tick + 2 in check_ticks[c]


def test_removed_connections_are_left_alone() -> None:
    wheel = PingWheel(interval=3, pong_timeout=1)
    c = Conn()
    wheel.add(c)
    wheel.remove(c)
    wheel.remove(c)
    for _ in range(6):
        wheel.tick(0.0)
    assert (c.pings, c.checks, len(wheel)) == (0, 0, 0)


def test_timeout_must_be_shorter_than_interval() -> None:
    with pytest.raises(ValueError):
        PingWheel(interval=5, pong_timeout=5)
