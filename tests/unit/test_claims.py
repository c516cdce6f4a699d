"""Counting a claim's grants: a quorum of members whose copy counts, or every member."""

from __future__ import annotations

from skyrelay.origin.claims import Ballot


def majority(granted: set[str], members: list[str]) -> bool:
    return sum(1 for m in members if m in granted) >= len(members) // 2 + 1


def test_a_quorum_of_informed_grants_wins() -> None:
    ballot = Ballot(["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], "a", amnesiac=False)
    assert not ballot.won(majority)
    ballot.count("b", {"granted": True, "accepted_term": 3, "state": {"top": 1}})
    assert ballot.won(majority)
    assert ballot.granted == [(3, {"top": 1})]


def test_amnesiac_grants_count_only_when_every_member_granted() -> None:
    ballot = Ballot(["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], "a", amnesiac=True)
    ballot.count("b", {"granted": True, "amnesiac": True})
    assert not ballot.won(majority)  # two empty copies prove nothing
    ballot.count("c", {"granted": True})
    assert ballot.won(majority)


def test_refusals_raise_the_next_term_and_silence_counts_for_nothing() -> None:
    ballot = Ballot(["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], "a", amnesiac=False)
    ballot.count("b", {"granted": False, "term": 41})
    ballot.count("c", None)
    assert ballot.higher == 41 and not ballot.won(majority)


def test_a_moving_channel_needs_a_quorum_of_its_old_members_too() -> None:
    ballot = Ballot(["a", "b", "d"], ["a", "b", "c"], ["a", "b", "d", "c"], "a", amnesiac=False)
    ballot.count("d", {"granted": True})
    assert not ballot.won(majority)  # a majority of the new set, not of the old one
    ballot.count("b", {"granted": True})
    assert ballot.won(majority)
