"""Replaying storage records into channel copies: states replace, publications follow,
retention and expiry apply, and what makes no sense is named and left out."""

from __future__ import annotations

from typing import Any

from skyrelay.origin.storage import records

NOW = 10_000.0


def pub(offset: int, at: float = NOW) -> dict[str, Any]:
    return {"offset": offset, "data": offset, "time": int(at * 1000)}


def state(ch: str, top: int, pubs: list[dict[str, Any]], term: int = 5) -> dict[str, Any]:
    snap = {"epoch": "e1", "top": top, "committed": top, "pubs": pubs}
    return records.state_record(ch, snap, term, NOW)


def run(recs: list[dict[str, Any]], keep: int | None = 10, ttl: float = 300) -> records.Replay:
    return records.replay(recs, lambda _: keep, lambda _: ttl, NOW)


def test_publications_follow_the_state_and_resends_are_skipped() -> None:
    out = run(
        [
            state("a", 2, [pub(1), pub(2)]),
            records.publications_record("a", 5, [pub(3), pub(4)], 3, NOW),
            records.publications_record("a", 6, [pub(4), pub(5)], 5, NOW),
        ]
    )
    image = out.images["a"]
    assert [p["offset"] for p in image.pubs] == [1, 2, 3, 4, 5]
    assert (image.top, image.committed, image.accepted_term) == (5, 5, 6)
    assert image.snapshot()["epoch"] == "e1" and not out.rejected


def test_a_later_state_replaces_the_copy() -> None:
    out = run([state("a", 9, [pub(9)]), state("a", 3, [pub(3)], term=7)])
    assert out.images["a"].top == 3 and out.images["a"].accepted_term == 7


def test_retention_keeps_the_newest_and_a_gone_namespace_drops_the_channel() -> None:
    recs = [
        state("a", 0, []),
        records.publications_record("a", 5, [pub(i) for i in range(1, 9)], 8, NOW),
    ]
    assert [p["offset"] for p in run(recs, keep=3).images["a"].pubs] == [6, 7, 8]
    assert run(recs, keep=0).images["a"].pubs == []
    assert run(recs, keep=None).images == {}


def test_expired_publications_go_from_the_front_and_idle_copies_expire() -> None:
    old = NOW - 400
    recs = [state("a", 3, [pub(1, old), pub(2, NOW), pub(3, old)])]
    # Oldest first only: offsets stay consecutive whatever the leaders' clocks said.
    assert [p["offset"] for p in run(recs).images["a"].pubs] == [2, 3]
    idle = records.state_record("b", {"epoch": "e", "top": 0, "pubs": []}, 1, old)
    assert "b" not in run([idle]).images


def test_records_that_make_no_sense_are_named_and_skipped() -> None:
    out = run(
        [
            records.publications_record("orphan", 5, [pub(1)], 1, NOW),
            state("a", 1, [pub(1)]),
            records.publications_record("a", 5, [pub(3)], 3, NOW),  # a gap
            records.publications_record("a", 4, [pub(2)], 2, NOW),  # an older term
            {"k": "?", "ch": "a"},
            {"k": "s", "ch": "a", "epoch": "", "top": 1, "at": 1},
            state("b", 3, [pub(1)]),  # does not run up to its top
        ]
    )
    assert out.images["a"].top == 1 and "b" not in out.images and "orphan" not in out.images
    assert len(out.rejected) == 6
    assert any("does not follow" in r for r in out.rejected)
