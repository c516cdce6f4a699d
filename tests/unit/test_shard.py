"""A single shard (replication 1) serving edge-link requests, without sockets."""

from __future__ import annotations

import orjson
import pytest

from skyrelay.link import wire
from skyrelay.origin.amnesia import START_GRACE, joined_running
from tests.support.shards import CONFIG, FakeEdge, call, new_shard


async def test_publish_orders_and_pushes_once_per_subscribed_edge() -> None:
    shard = new_shard()
    a, b, api = FakeEdge("a"), FakeEdge("b"), FakeEdge("api")
    assert (await call(shard, a, op="sub", ch="chat"))["result"]["offset"] == 0
    await call(shard, b, op="sub", ch="chat")
    await call(shard, b, op="sub", ch="chat")  # idempotent per edge
    result = (await call(shard, api, op="pub", ch="chat", data={"t": 1}))["result"]
    assert result["offset"] == 1
    for edge in (a, b):
        assert len(edge.sent) == 1
        push = edge.sent[0]["push"]
        assert push["ch"] == "chat" and push["epoch"] == result["epoch"]
        assert push["pub"]["data"] == {"t": 1} and push["pub"]["offset"] == 1
    assert api.sent == []


async def test_unsubscribed_and_dropped_edges_get_no_push() -> None:
    shard = new_shard()
    a, b, api = FakeEdge("a"), FakeEdge("b"), FakeEdge("api")
    await call(shard, a, op="sub", ch="c")
    await call(shard, b, op="sub", ch="c")
    await call(shard, a, op="unsub", ch="c")
    shard.drop_peer(b)
    await call(shard, api, op="pub", ch="c", data=1)
    assert a.sent == [] and b.sent == []
    assert shard.subscribers == {}


async def test_subscribe_since_returns_the_missed_publications() -> None:
    shard = new_shard()
    api, edge = FakeEdge("api"), FakeEdge("e")
    for n in range(4):
        await call(shard, api, op="pub", ch="c", data=n)
    result = (await call(shard, edge, op="sub", ch="c", since=2))["result"]
    assert [p["offset"] for p in result["publications"]] == [3, 4]
    assert result["offset"] == 4


async def test_idempotency_key_returns_the_first_result_without_republishing() -> None:
    shard = new_shard()
    edge, api = FakeEdge("e"), FakeEdge("api")
    await call(shard, edge, op="sub", ch="c")
    first = await call(shard, api, op="pub", ch="c", data=1, ikey="k")
    again = await call(shard, api, op="pub", ch="c", data=1, ikey="k")
    assert again["result"] == first["result"]
    assert len(edge.sent) == 1


async def test_history_read_and_errors() -> None:
    shard = new_shard()
    e = FakeEdge("e")
    for n in range(3):
        await call(shard, e, op="pub", ch="c", data=n)
    history = (await call(shard, e, op="history", ch="c", limit=2, reverse=True))["result"]
    assert [p["offset"] for p in history["publications"]] == [3, 2]
    read = (await call(shard, e, op="read", ch="c", offset=1, limit=10))["result"]
    assert [p["offset"] for p in read["publications"]] == [2, 3]
    assert (await call(shard, e, op="history", ch="nohist:x", limit=1))["error"]["code"] == 108
    assert (await call(shard, e, op="sub", ch="unknown:x"))["error"]["code"] == 102
    assert (await call(shard, e, op="pub", ch="c"))["error"]["code"] == 107
    assert (await call(shard, e, op="bogus", ch="c"))["error"]["code"] == 107
    assert (await call(shard, e, op="sub", ch=""))["error"]["code"] == 107
    assert (await call(shard, e, op="read", ch="c", offset="x"))["error"]["code"] == 107
    assert (await call(shard, e, op="append", ch="c", term=1))["error"]["code"] == 107


async def test_request_without_id_is_a_link_protocol_error() -> None:
    with pytest.raises(wire.LinkProtocolError):
        await new_shard().handle(FakeEdge("e"), {"op": "sub", "ch": "c"})


async def test_publish_latency_and_errors_are_measured() -> None:
    shard = new_shard()
    api = FakeEdge("api")
    await call(shard, api, op="pub", ch="m", data=1)
    assert (await call(shard, api, op="pub", ch="m"))["error"]["code"] == 107
    registry = shard.metrics.registry
    assert registry.get_sample_value("skyrelay_origin_publish_seconds_count") == 1
    errors = registry.get_sample_value("skyrelay_origin_publish_errors_total", {"code": "107"})
    assert errors == 1


def test_pushes_carry_when_the_leader_took_the_publish() -> None:
    push = orjson.loads(wire.pub_push("c", "e", {"data": 1, "offset": 1}, 12.5))["push"]
    assert push["at"] == 12.5
    assert "at" not in orjson.loads(wire.pub_push("c", "e", {"data": 1}))["push"]


async def test_a_leader_behind_an_edges_position_claims_the_channel_again() -> None:
    """An edge that has seen more of this stream than the leader committed proves the leader
    was deposed without hearing of it: it claims again rather than answer from its copy."""
    shard = new_shard()
    api, other, edge = FakeEdge("api"), FakeEdge("other"), FakeEdge("e")
    epoch = (await call(shard, api, op="pub", ch="c", data=1))["result"]["epoch"]
    await call(shard, other, op="sub", ch="c")
    rep = shard.replicator.replicas["c"]
    term = rep.term

    await call(shard, edge, op="sub", ch="c", since=1, epoch=epoch)  # caught up: as before
    await call(shard, edge, op="sub", ch="c", since=7, epoch="another")  # another stream
    assert rep.term == term and other.sent == []

    answer = (await call(shard, edge, op="sub", ch="c", since=7, epoch=epoch))["result"]
    assert rep.is_leader and rep.term > term  # claimed again under a new term
    assert other.sent == [{"push": {"ch": "c", "moved": True}}]
    assert answer["offset"] == 1  # still behind after the claim: the edge decides (2500)


async def test_a_taken_over_stream_commits_at_once_when_one_copy_is_enough() -> None:
    # Found by fuzzing: a leader adopting publications it held uncommitted waited for a
    # follower ack that never comes when min_copies is 1, so the channel stayed unavailable.
    shard = new_shard()
    edge = FakeEdge("e")
    term = shard.replicator.boot_term + 1
    state = {"epoch": "e1", "top": 2, "committed": 1, "pubs": [{"offset": 1}, {"offset": 2}]}
    installed = await call(
        shard, edge, op="install", ch="c", term=term, state=state, **{"from": "o1"}
    )
    assert installed["result"]["ok"] is True
    assert (await call(shard, edge, op="sub", ch="c"))["result"]["offset"] == 2
    assert (await call(shard, edge, op="pub", ch="c", data=3))["result"]["offset"] == 3


async def test_a_snapshot_that_does_not_hold_together_is_refused() -> None:
    shard = new_shard()
    edge = FakeEdge("e")
    term = shard.replicator.boot_term + 1
    for state in (
        {"epoch": "e1", "top": 0, "committed": 1},
        {"epoch": "e1", "top": 3, "pubs": [{"offset": 1}]},
        {"epoch": "e1", "top": 1, "pubs": [None]},
        {"top": 1},
    ):
        answer = await call(
            shard, edge, op="install", ch="c", term=term, state=state, **{"from": "o1"}
        )
        assert answer["error"]["code"] == 107, state
    answer = await call(
        shard, edge, op="append", ch="c", term=term, prev=0, pubs=[[]], **{"from": "o1"}
    )
    assert answer["error"]["code"] == 107


def test_a_shard_restarted_into_a_running_cluster_counts_its_empty_copies_as_unknown() -> None:
    assert joined_running(2.0, [3.0, 600.0])  # a peer ran long before this shard
    assert not joined_running(2.0, [3.0, 2.0 + START_GRACE])  # one cluster start
    assert not joined_running(2.0, [])
    shard = new_shard()
    replicator = shard.replicator
    rep = replicator.replica("chat")
    assert replicator.amnesiac(rep)  # before it has asked its peers: assume the worst
    replicator.joined_running = False
    assert not replicator.amnesiac(rep)
    replicator.joined_running = True
    assert replicator.amnesiac(rep)
    replicator.booted -= CONFIG.origin.idempotency_window + 301  # what it held has expired
    assert not replicator.amnesiac(rep)
