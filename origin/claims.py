"""Counting a claim: which members granted a term, whose copy of the channel counts, and
whether that makes a quorum. Pure code; ``origin.replication`` asks the members and acts on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Ballot:
    """One round of a claim: who granted the term, whose copy counts, the highest term a
    refusal named."""

    __slots__ = ("asked_for", "granted", "granters", "higher", "informed", "members", "previous")

    def __init__(
        self,
        members: list[str],
        previous: list[str],
        asked_for: list[str],
        own_id: str,
        amnesiac: bool,
    ) -> None:
        self.members = members
        self.previous = previous
        self.asked_for = asked_for
        self.granted: list[tuple[int, dict[str, Any] | None]] = []
        self.granters = {own_id}
        # Granters whose copy counts: not empty after a restart into a running cluster.
        self.informed: set[str] = set() if amnesiac else {own_id}
        self.higher = 0

    def count(self, member: str, answer: dict[str, Any] | None) -> None:
        if answer is None:
            return
        if answer.get("granted"):
            self.granted.append((int(answer.get("accepted_term", 0)), answer.get("state")))
            self.granters.add(member)
            if not answer.get("amnesiac"):
                self.informed.add(member)
        else:
            self.higher = max(self.higher, int(answer.get("term", 0)))

    def won(self, quorum_met: Callable[[set[str], list[str]], bool]) -> bool:
        if quorum_met(self.informed, self.members) and quorum_met(self.informed, self.previous):
            return True
        # Too few members remember the channel: only every member's copy shows all that is
        # left of it.
        return self.granters >= set(self.asked_for)
