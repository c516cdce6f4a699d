"""Recovery decisions: all or nothing, never partial."""

from __future__ import annotations

from skyrelay.edge.recovery import decide_recovery


def pubs(*offsets: int) -> list[dict[str, object]]:
    return [{"data": o, "offset": o} for o in offsets]


def test_contiguous_page_up_to_top_recovers_with_the_clients_offset() -> None:
    out = decide_recovery(3, "e", pubs(4, 5, 6), "e", 6, 300)
    assert out.recovered
    assert [p["offset"] for p in out.publications] == [4, 5, 6]
    assert (out.epoch, out.offset) == ("e", 3)


def test_nothing_missed_recovers_with_no_publications() -> None:
    out = decide_recovery(6, "e", [], "e", 6, 300)
    assert out.recovered and out.publications == []


def test_empty_client_epoch_matches_any() -> None:
    assert decide_recovery(1, "", pubs(2), "e", 2, 300).recovered


def test_other_epoch_fails_with_the_current_position() -> None:
    out = decide_recovery(1, "old", pubs(2), "e", 2, 300)
    assert not out.recovered
    assert (out.publications, out.epoch, out.offset) == ([], "e", 2)


def test_gap_at_the_start_fails_and_replays_nothing() -> None:
    out = decide_recovery(1, "e", pubs(5, 6), "e", 6, 300)
    assert not out.recovered and out.publications == []


def test_page_not_reaching_top_fails() -> None:
    assert not decide_recovery(1, "e", pubs(2, 3), "e", 9, 300).recovered


def test_more_than_the_limit_fails() -> None:
    assert not decide_recovery(0, "e", pubs(1, 2, 3, 4), "e", 4, 3).recovered


def test_client_ahead_of_the_stream_fails() -> None:
    assert not decide_recovery(10, "e", [], "e", 4, 300).recovered
    assert not decide_recovery(2, "e", [], "e", 4, 300).recovered
