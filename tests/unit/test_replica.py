"""The per-channel replication state machine: terms, fencing, installs, appends, commits."""

from __future__ import annotations

from skyrelay.origin.replica import ChannelReplica, Role, best_state, election_quorum


def replica(name: str, floor: int = 0, min_copies: int = 2) -> ChannelReplica:
    return ChannelReplica("c", name, size=100, ttl=600, min_copies=min_copies, floor_term=floor)


def lead(rep: ChannelReplica, term: int, members: list[str], best: dict | None = None) -> None:  # type: ignore[type-arg]
    rep.start_claim(term)
    rep.become_leader(term, best, members, epoch_factory=lambda: "ep")


def test_quorums_always_meet() -> None:
    for members in range(1, 6):
        for copies in range(1, members + 1):
            assert election_quorum(members, copies) + copies > members


def test_a_term_is_granted_once_and_lower_terms_are_fenced() -> None:
    b = replica("b")
    assert b.on_claim(10, "a")["granted"] is True
    assert b.on_claim(10, "c") == {"granted": False, "term": 10}
    assert b.on_claim(9, "c")["granted"] is False
    assert b.on_append(9, "old", 0, [], 0) == {"ok": False, "term": 10}
    assert b.on_install(9, "old", {"epoch": "x", "top": 0, "pubs": []}) == {"ok": False, "term": 10}


def test_a_restarted_replica_refuses_terms_from_before_its_boot() -> None:
    fresh = replica("b", floor=1_000)
    assert fresh.on_claim(999, "a")["granted"] is False
    assert fresh.on_install(500, "a", {"epoch": "x", "top": 0, "pubs": []})["ok"] is False
    assert fresh.on_claim(1_001, "a")["granted"] is True


def test_leader_commits_at_min_copies_and_follower_applies_in_order() -> None:
    leader, follower = replica("a"), replica("b")
    follower.on_claim(5, "a")
    lead(leader, 5, ["a", "b", "c"])
    pub = leader.propose({"n": 1}, 1.0, ikey="k1")
    assert leader.advance_commit() == []  # only the leader holds it
    assert leader.stream is not None and leader.stream.committed == 0

    answer = follower.on_append(5, "a", 0, leader.stream.records_after(0) or [], 0)
    assert answer == {"install": True, "ok": False}  # never synced with this leader
    assert follower.on_install(5, "a", leader.stream.snapshot()) == {"ok": True, "top": 1}
    committed = leader.on_ack("b", 1)
    assert [p.offset for p in committed] == [pub.offset]
    assert leader.stream.since(0, -1, 1.0).publications[0].data == {"n": 1}

    leader.propose({"n": 2}, 1.0)
    records = leader.stream.records_after(1) or []
    assert follower.on_append(5, "a", 1, records, 1) == {"ok": True, "top": 2}
    assert follower.on_append(5, "a", 1, records, 1) == {"ok": True, "top": 2}  # resent: no-op
    assert follower.stream is not None and follower.stream.find_ikey("k1") is not None


def test_append_with_a_gap_asks_for_an_install() -> None:
    leader, follower = replica("a"), replica("b")
    follower.on_claim(3, "a")
    lead(leader, 3, ["a", "b"])
    assert leader.stream is not None
    follower.on_install(3, "a", leader.stream.snapshot())
    for n in range(3):
        leader.propose(n, 0.0)
    assert follower.on_append(3, "a", 2, leader.stream.records_after(2) or [], 0) == {
        "ok": False,
        "install": True,
    }


def test_a_deposed_leader_steps_down_when_it_sees_a_higher_term() -> None:
    old = replica("a")
    lead(old, 5, ["a", "b", "c"])
    assert old.is_leader
    old.on_append(7, "b", 0, [], 0)
    assert old.role is Role.FOLLOWER and old.leader == "b"
    again = replica("a")
    lead(again, 5, ["a", "b"])
    again.on_claim(6, "b")
    assert not again.is_leader


def test_best_state_prefers_the_latest_leader_then_the_longest_stream() -> None:
    old_long = {"epoch": "e", "top": 9, "pubs": []}
    new_short = {"epoch": "e", "top": 5, "pubs": []}
    new_long = {"epoch": "e", "top": 6, "pubs": []}
    assert best_state([(1, old_long), (2, new_short)]) is new_short
    assert best_state([(2, new_short), (2, new_long), (0, None)]) is new_long
    assert best_state([(0, None), (0, None)]) is None


def test_new_leader_serves_the_adopted_stream_with_the_same_epoch() -> None:
    first = replica("a")
    lead(first, 1, ["a", "b", "c"])
    assert first.stream is not None
    for n in range(3):
        first.propose(n, 0.0)
    first.on_ack("b", 3)
    state = first.stream.snapshot()
    second = replica("b")
    lead(second, 2, ["a", "b", "c"], best=state)
    assert second.stream is not None
    assert (second.stream.epoch, second.stream.top, second.adopted_top) == ("ep", 3, 3)
    assert second.propose("next", 0.0).offset == 4


def test_single_copy_commits_at_once() -> None:
    solo = replica("a", min_copies=1)
    lead(solo, 1, ["a"])
    solo.propose("x", 0.0)
    assert [p.offset for p in solo.advance_commit()] == [1]
