"""Merging survey answers at a shard, without sockets."""

from __future__ import annotations

import pytest

from skyrelay.origin.tally import (
    Tally,
    check_survey,
    merge_channels,
    merge_disconnects,
    merge_nodes,
    survey_result,
)
from skyrelay.protocol.codes import ReplyError


def test_done_once_every_peer_answered() -> None:
    tally = Tally("channels", [("p1", "e0"), ("p2", "e1")])
    assert not tally.done
    assert not tally.record("p1", {"channels": {}})
    assert tally.missing() == ["e1"]
    assert tally.record("p2", {"channels": {}})
    assert tally.missing() == []


def test_nobody_asked_is_done_at_once() -> None:
    tally = Tally("info", [])
    assert tally.done
    assert survey_result(tally, [{"uid": "u", "name": "o0"}]) == {
        "nodes": [{"uid": "u", "name": "o0"}]
    }


def test_errors_and_lost_links_are_missing() -> None:
    tally = Tally("disconnect", [("p1", "e0"), ("p2", "e1"), ("p3", "e2")])
    tally.record("p1", None)
    tally.lost("p2")
    assert tally.record("p3", {"disconnected": 2})
    assert tally.missing() == ["e0", "e1"]
    assert survey_result(tally) == {"disconnected": 2, "missing": ["e0", "e1"]}


def test_a_peer_with_two_links_is_counted_once() -> None:
    """An edge that just reconnected: the old link may linger, or answer too."""
    tally = Tally("channels", [("old", "e0"), ("new", "e0"), ("p", "e1")])
    assert not tally.record("new", {"channels": {"a": 1}})
    assert tally.record("p", {"channels": {"a": 2}})  # the old link is not waited for
    assert tally.record("old", {"channels": {"a": 1}})  # late duplicate ignored
    assert survey_result(tally) == {"channels": {"a": 3}}


def test_an_answer_from_a_link_not_asked_is_ignored() -> None:
    tally = Tally("channels", [("p1", "e0")])
    tally.record("stranger", {"channels": {"a": 9}})
    tally.record("p1", {"channels": {"a": 1}})
    assert survey_result(tally) == {"channels": {"a": 1}}


def test_a_failed_link_that_answers_on_another_is_not_missing() -> None:
    tally = Tally("channels", [("old", "e0"), ("new", "e0")])
    tally.lost("old")
    assert tally.missing() == ["e0"]
    tally.record("new", {"channels": {}})
    assert tally.missing() == []


def test_merge_channels_sums_and_skips_junk() -> None:
    answers = [
        {"channels": {"a": 2, "b": 1}},
        {"channels": {"a": 3, "c": 0, "d": True, "e": "x"}},
        {"channels": None},
        {},
    ]
    assert merge_channels(answers) == {"a": 5, "b": 1}


def test_merge_disconnects() -> None:
    assert merge_disconnects([{"disconnected": 2}, {"disconnected": 1}, {}]) == 3


def test_merge_nodes_orders_and_drops_nameless() -> None:
    nodes = [{"uid": "2", "name": "o0"}, {"uid": "1", "name": "e1"}, {"name": "x"}, {"uid": "3"}]
    assert [n["name"] for n in merge_nodes(nodes)] == ["e1", "o0"]


def test_info_result_lists_edges_shards_and_who_is_missing() -> None:
    tally = Tally("info", [("p1", "e0"), ("p2", "e1")])
    tally.record("p1", {"node": {"uid": "a", "name": "e0", "num_clients": 4}})
    result = survey_result(tally, [{"uid": "b", "name": "o0"}], ["o2"])
    assert result == {
        "nodes": [{"uid": "a", "name": "e0", "num_clients": 4}, {"uid": "b", "name": "o0"}],
        "missing": ["e1", "o2"],
    }


def test_check_survey() -> None:
    assert check_survey({"kind": "channels", "params": {"pattern": "a"}}) == (
        "channels",
        {"pattern": "a"},
    )
    assert check_survey({"kind": "info"}) == ("info", {})
    with pytest.raises(ReplyError, match="unknown survey kind") as raised:
        check_survey({"kind": "connections"})
    assert raised.value.code == 107
    with pytest.raises(ReplyError, match="params must be an object"):
        check_survey({"kind": "info", "params": []})
