"""The origin shard's request handling and push routing, without sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from origin.shard import Shard
from skyrelay import edgelink
from skyrelay.config import parse_config

CONFIG = parse_config(
    {
        "shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}],
        "namespaces": {"nohist": {"history_size": 0}},
    },
    env={},
)


def call(shard: Shard, peer: str, now: float = 0.0, **message: Any) -> dict[str, Any]:
    out = shard.handle(peer, {"id": 1, **message}, now)
    return orjson.loads(out.response)


def test_publish_orders_and_pushes_once_per_subscribed_edge() -> None:
    shard = Shard(CONFIG, "o0")
    assert call(shard, "edge-a", op="sub", ch="chat")["result"]["offset"] == 0
    call(shard, "edge-b", op="sub", ch="chat")
    call(shard, "edge-b", op="sub", ch="chat")  # idempotent per edge
    out = shard.handle("api", {"id": 9, "op": "pub", "ch": "chat", "data": {"t": 1}}, 5.0)
    result = orjson.loads(out.response)["result"]
    assert result["offset"] == 1
    assert sorted(out.push_to) == ["edge-a", "edge-b"]
    assert out.push is not None
    push = orjson.loads(out.push)["push"]
    assert push == {
        "ch": "chat",
        "epoch": result["epoch"],
        "pub": {"data": {"t": 1}, "offset": 1, "time": 5000},
    }


def test_unsubscribed_and_dropped_edges_get_no_push() -> None:
    shard = Shard(CONFIG, "o0")
    call(shard, "a", op="sub", ch="c")
    call(shard, "b", op="sub", ch="c")
    call(shard, "a", op="unsub", ch="c")
    shard.drop_peer("b")
    out = shard.handle("x", {"id": 2, "op": "pub", "ch": "c", "data": 1}, 0.0)
    assert out.push is None and out.push_to == []
    assert shard.subscribers == {}


def test_subscribe_since_returns_the_missed_publications() -> None:
    shard = Shard(CONFIG, "o0")
    for n in range(4):
        call(shard, "api", op="pub", ch="c", data=n)
    result = call(shard, "edge", op="sub", ch="c", since=2)["result"]
    assert [p["offset"] for p in result["publications"]] == [3, 4]
    assert result["offset"] == 4


def test_idempotency_key_returns_the_first_result_without_republishing() -> None:
    shard = Shard(CONFIG, "o0")
    call(shard, "e", op="sub", ch="c")
    first = shard.handle("api", {"id": 1, "op": "pub", "ch": "c", "data": 1, "ikey": "k"}, 0.0)
    again = shard.handle("api", {"id": 2, "op": "pub", "ch": "c", "data": 1, "ikey": "k"}, 1.0)
    assert orjson.loads(again.response)["result"] == orjson.loads(first.response)["result"]
    assert again.push is None
    assert shard.streams["c"].top == 1
    # After the window the key is forgotten.
    late = shard.handle("api", {"id": 3, "op": "pub", "ch": "c", "data": 1, "ikey": "k"}, 1000.0)
    assert orjson.loads(late.response)["result"]["offset"] == 2


def test_history_read_and_errors() -> None:
    shard = Shard(CONFIG, "o0")
    for n in range(3):
        call(shard, "api", op="pub", ch="c", data=n)
    history = call(shard, "e", op="history", ch="c", limit=2, reverse=True)["result"]
    assert [p["offset"] for p in history["publications"]] == [3, 2]
    read = call(shard, "e", op="read", ch="c", offset=1, limit=10)["result"]
    assert [p["offset"] for p in read["publications"]] == [2, 3]
    assert call(shard, "e", op="history", ch="nohist:x", limit=1)["error"]["code"] == 108
    assert call(shard, "e", op="sub", ch="unknown:x")["error"]["code"] == 102
    assert call(shard, "e", op="pub", ch="c")["error"]["code"] == 107
    assert call(shard, "e", op="bogus", ch="c")["error"]["code"] == 107
    assert call(shard, "e", op="sub", ch="")["error"]["code"] == 107
    assert call(shard, "e", op="read", ch="c", offset="x")["error"]["code"] == 107


def test_request_without_id_is_a_link_protocol_error() -> None:
    with pytest.raises(edgelink.LinkProtocolError):
        Shard(CONFIG, "o0").handle("e", {"op": "sub", "ch": "c"}, 0.0)


def test_edge_link_frames_round_trip() -> None:
    frame = edgelink.join_frame([edgelink.result(1, {}), edgelink.pub_push("c", "e", {"data": 1})])
    assert edgelink.decode_frame(frame) == [
        {"id": 1, "result": {}},
        {"push": {"ch": "c", "epoch": "e", "pub": {"data": 1}}},
    ]
    with pytest.raises(edgelink.LinkProtocolError):
        edgelink.decode_frame(b"{bad")
    with pytest.raises(edgelink.LinkProtocolError):
        edgelink.decode_frame(b"[]")
