"""Health state transitions, and the primary each view picks."""

from __future__ import annotations

from skyrelay.ring.health import Health, HealthSettings, HealthTracker, HealthView


def test_fall_and_rise_thresholds() -> None:
    t = HealthTracker(fall=3, rise=2)
    assert [t.failure(), t.failure()] == [False, False]
    assert t.state is Health.UP
    assert t.failure() is True and t.state is Health.DOWN
    assert t.failure() is False
    assert t.success() is False and t.state is Health.DOWN
    assert t.success() is True and t.state is Health.UP


def test_a_success_resets_the_failure_count() -> None:
    t = HealthTracker(fall=2, rise=1)
    t.failure()
    t.success()
    assert t.failure() is False and t.state is Health.UP


def test_a_lost_link_is_down_at_once() -> None:
    t = HealthTracker(fall=5, rise=1)
    assert t.lost() is True and t.state is Health.DOWN
    assert t.lost() is False


def test_view_picks_the_first_healthy_replica_and_trusts_itself() -> None:
    view = HealthView(["a", "b", "c"], HealthSettings(fall=1, rise=1), self_id="b")
    assert view.first_up(["a", "b", "c"]) == "a"
    view.trackers["a"].failure()
    assert view.first_up(["a", "b", "c"]) == "b"
    assert view.is_up("b") and "b" not in view.trackers
    view.trackers["c"].failure()
    assert view.first_up(["a", "c"]) is None
    assert view.snapshot() == {"a": "down", "c": "down"}
