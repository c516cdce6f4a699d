"""Readiness: a copy is current when it was taken under the leader's term and reaches its
commit point; a leader lists the channels it leads with a given member."""

from __future__ import annotations

import time

from skyrelay.origin.readiness import Readiness, behind, led_by_me
from skyrelay.origin.replica import ChannelReplica, FollowerProgress
from skyrelay.origin.stream import ChannelStream
from tests.support.shards import FakeEdge, call, new_shard


def replica(channel: str, term: int, top: int) -> ChannelReplica:
    rep = ChannelReplica(channel, "o1", 100, 300.0, 2)
    rep.stream = ChannelStream(100, 300.0, lambda: "e")
    for n in range(top):
        rep.stream.publish(n, time.time())
    rep.accepted_term = term
    return rep


def test_a_copy_is_current_under_the_leaders_term_up_to_its_commit() -> None:
    replicas = {"a": replica("a", 7, 5), "b": replica("b", 6, 9), "c": replica("c", 7, 2)}
    led = {"a": [7, 5], "b": [7, 5], "c": [7, 3], "d": [7, 0]}
    # b: an older leader's copy; c: short of the commit; d: no copy at all.
    assert behind(replicas, led) == ["b", "c", "d"]
    assert behind(replicas, {"a": [7, 4]}) == []


def test_unknown_or_behind_peers_are_not_ready() -> None:
    state = Readiness()
    assert not state.current  # never checked
    state.behind, state.checked = {"o1": 0, "o2": 0}, True
    assert state.current
    state.behind["o2"] = -1  # its link is still connecting
    assert not state.current


async def test_a_leader_lists_what_it_leads_with_a_member() -> None:
    shard = new_shard()
    await call(shard, FakeEdge("api"), op="pub", ch="chat", data=1)
    rep = shard.replicator.replica("chat")
    rep.followers["o5"] = FollowerProgress()  # as if o5 were a member of its replica set
    assert led_by_me(shard.replicator, "o5") == {"chat": [rep.term, 1]}
    assert led_by_me(shard.replicator, "o9") == {}
