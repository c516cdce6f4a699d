"""Health of shards as one process sees them: pure state, fed by probes and link events."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum


class Health(Enum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    # Seconds between active probes of each shard.
    interval: float = 1.0
    # Seconds a probe may take before it counts as a failure.
    timeout: float = 1.0
    # Consecutive failures that mark a shard down.
    fall: int = 3
    # Consecutive successes that mark a down shard up again.
    rise: int = 2


class HealthTracker:
    """One target: UP until ``fall`` failures in a row, then DOWN until ``rise`` successes."""

    __slots__ = ("failures", "fall", "rise", "state", "successes")

    def __init__(self, fall: int, rise: int) -> None:
        self.fall = fall
        self.rise = rise
        self.state = Health.UP
        self.failures = 0
        self.successes = 0

    def success(self) -> bool:
        """Record a good probe; True when the state changed."""
        self.failures = 0
        if self.state is Health.UP:
            return False
        self.successes += 1
        if self.successes >= self.rise:
            self.state = Health.UP
            self.successes = 0
            return True
        return False

    def failure(self) -> bool:
        """Record a failed probe; True when the state changed."""
        self.successes = 0
        if self.state is Health.DOWN:
            return False
        self.failures += 1
        if self.failures >= self.fall:
            self.state = Health.DOWN
            self.failures = 0
            return True
        return False

    def lost(self) -> bool:
        """The link to the target broke: a definite failure, down at once."""
        self.successes = 0
        self.failures = 0
        if self.state is Health.DOWN:
            return False
        self.state = Health.DOWN
        return True


class HealthView:
    """Every shard's health from one process; ``self_id`` (a shard's own id) is always up."""

    def __init__(self, ids: Iterable[str], settings: HealthSettings, self_id: str = "") -> None:
        self.settings = settings
        self.self_id = self_id
        self.trackers = {
            i: HealthTracker(settings.fall, settings.rise) for i in ids if i != self_id
        }
        # Called with (shard id, new state) on every transition, whatever caused it.
        self.watchers: list[Callable[[str, Health], None]] = []

    def probed(self, shard_id: str, ok: bool) -> bool:
        """Record a probe's outcome; True when the shard's state changed."""
        tracker = self.trackers.get(shard_id)
        if tracker is None:
            return False
        return self._changed(shard_id, tracker.success() if ok else tracker.failure())

    def lost(self, shard_id: str) -> bool:
        """The link to ``shard_id`` broke: down at once. True when that is a change."""
        tracker = self.trackers.get(shard_id)
        return tracker is not None and self._changed(shard_id, tracker.lost())

    def _changed(self, shard_id: str, changed: bool) -> bool:
        if changed:
            state = self.trackers[shard_id].state
            for watcher in self.watchers:
                watcher(shard_id, state)
        return changed

    def is_up(self, shard_id: str) -> bool:
        if shard_id == self.self_id:
            return True
        tracker = self.trackers.get(shard_id)
        return tracker is not None and tracker.state is Health.UP

    def first_up(self, replicas: Sequence[str]) -> str | None:
        for shard_id in replicas:
            if self.is_up(shard_id):
                return shard_id
        return None

    def add(self, shard_id: str) -> None:
        if shard_id != self.self_id and shard_id not in self.trackers:
            self.trackers[shard_id] = HealthTracker(self.settings.fall, self.settings.rise)

    def remove(self, shard_id: str) -> None:
        self.trackers.pop(shard_id, None)

    def snapshot(self) -> dict[str, str]:
        return {i: t.state.value for i, t in self.trackers.items()}
