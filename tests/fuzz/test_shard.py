"""A shard fed arbitrary edge-link requests, without sockets: every request gets a well-formed
answer, and after each one the streams hold their invariants (offsets consecutive, committed
at most top, history bounded) and subscribed edges have seen every publication in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from skyrelay.config import parse_config
from skyrelay.link import wire
from skyrelay.origin.shard import Shard
from skyrelay.ring import Member, Ring
from skyrelay.ring.health import HealthSettings, HealthView
from tests.fuzz.strategies import INT64, json_objects, json_values, near

CONFIG = parse_config(
    {
        "shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}],
        "replication": 1,
        "namespaces": {"nohist": {"history_size": 0}, "tiny": {"history_size": 3}},
    },
    env={},
)
CHANNELS = ["c", "d", "tiny:t", "nohist:x"]
EDGE_OPS = [
    "sub",
    "unsub",
    "pub",
    "history",
    "read",
    "history_remove",
    "presence",
    "presence_stats",
]


@dataclass
class FakeEdge:
    name: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, message: bytes) -> None:
        (decoded,) = wire.decode_frame(message)
        self.sent.append(decoded)

    def __hash__(self) -> int:
        return hash(self.name)


def new_shard() -> Shard:
    health = HealthView(["o0"], HealthSettings(), self_id="o0")
    return Shard(CONFIG, "o0", Ring([Member("o0")], 1), health, {})


small_int = st.one_of(st.integers(-3, 12), INT64)
record = st.fixed_dictionaries(
    {},
    optional={
        "offset": near(1) | small_int,
        "data": json_values,
        "time": near(0),
        "info": near({}),
        "tags": near({}),
        "ikey": near("k"),
    },
)
snapshot = st.fixed_dictionaries(
    {},
    optional={
        "epoch": near("e1"),
        "top": small_int,
        "committed": small_int,
        "pubs": st.lists(record, max_size=4) | json_values,
    },
)


def requests(ops: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    known = {
        "ch": st.sampled_from(CHANNELS) | near("unknown:x") | st.just(""),
        "since": small_int | json_values,
        "limit": small_int | json_values,
        "offset": small_int | json_values,
        "reverse": st.booleans() | json_values,
        "data": json_values,
        "ikey": st.sampled_from(["k1", "k2", ""]) | json_values,
        "tags": near({"a": "b"}),
        "info": near({"client": "c1", "user": "u"}),
        "client": near("c1"),
        "skip_history": st.booleans(),
        # Terms start at a shard's boot time in milliseconds: only big ones get past fencing.
        "term": st.integers(2**41, 2**42) | st.sampled_from([2**62, 2**63 - 1]) | json_values,
        "from": near("o1"),
        "prev": small_int | json_values,
        "pubs": st.lists(record, max_size=4) | json_values,
        "commit": small_int | json_values,
        "state": snapshot | json_values,
    }
    return st.fixed_dictionaries(
        {"id": st.integers(1, 2**31), "op": st.sampled_from(ops)}, optional=known
    ).flatmap(lambda base: json_objects.map(lambda extra: {**extra, **base}))


def check_answer(request: dict[str, Any], raw: bytes) -> dict[str, Any]:
    (answer,) = wire.decode_frame(raw)
    assert answer["id"] == request["id"]
    if "error" in answer:
        error = answer["error"]
        assert isinstance(error["code"], int) and isinstance(error["message"], str)
    else:
        assert isinstance(answer["result"], dict)
    return answer


def check_streams(shard: Shard) -> None:
    for channel, rep in shard.replicator.replicas.items():
        stream = rep.stream
        if stream is None:
            continue
        assert 0 <= stream.committed <= stream.top, (channel, stream.committed, stream.top)
        offsets = [p.offset for p in stream._entries]
        assert offsets == list(range(stream.top - len(offsets) + 1, stream.top + 1)), offsets
        assert len(offsets) <= max(stream.size, 0)


async def run(shard: Shard, edges: list[FakeEdge], steps: list[tuple[int, dict[str, Any]]]) -> None:
    for who, request in steps:
        edge = edges[who]
        if shard.is_immediate(request):
            raw = shard.handle_now(edge, request)
        else:
            raw = await shard.handle(edge, request)
        check_answer(request, raw)
        check_streams(shard)


@given(st.lists(st.tuples(st.integers(0, 2), requests(EDGE_OPS)), max_size=25))
def test_edge_requests_keep_streams_ordered(steps: list[tuple[int, dict[str, Any]]]) -> None:
    shard = new_shard()
    edges = [FakeEdge(f"e{i}") for i in range(3)]
    acked: dict[str, list[int]] = {}
    subscribed_at: dict[tuple[str, str], int] = {}

    async def drive() -> None:
        for who, request in steps:
            edge = edges[who]
            if shard.is_immediate(request):
                raw = shard.handle_now(edge, request)
            else:
                raw = await shard.handle(edge, request)
            answer = check_answer(request, raw)
            check_streams(shard)
            result = answer.get("result")
            channel = request.get("ch")
            if result is None or not isinstance(channel, str):
                continue
            if request["op"] == "pub" and "offset" in result:
                acked.setdefault(channel, [])
                if result["offset"] not in acked[channel]:
                    acked[channel].append(result["offset"])
            if request["op"] == "sub":
                subscribed_at.setdefault((edge.name, channel), result["offset"])

    asyncio.run(drive())
    for channel, offsets in acked.items():
        assert offsets == list(range(1, len(offsets) + 1)), (channel, offsets)
    for edge in edges:
        seen: dict[str, list[int]] = {}
        for message in edge.sent:
            push = message["push"]
            if "pub" in push and push["pub"].get("offset"):
                seen.setdefault(push["ch"], []).append(push["pub"]["offset"])
        for channel, offsets in seen.items():
            start = subscribed_at[(edge.name, channel)]
            assert offsets == list(range(start + 1, start + 1 + len(offsets))), offsets


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            requests([*EDGE_OPS, "claim", "append", "install", "presence_add", "bogus"]),
        ),
        max_size=25,
    )
)
def test_any_request_keeps_streams_sound(steps: list[tuple[int, dict[str, Any]]]) -> None:
    shard = new_shard()
    edges = [FakeEdge(f"e{i}") for i in range(3)]
    asyncio.run(run(shard, edges, steps))


@given(json_objects)
def test_a_request_without_an_integer_id_is_a_link_protocol_error(message: dict[str, Any]) -> None:
    message.pop("id", None)
    shard = new_shard()
    try:
        if shard.is_immediate(message):
            shard.handle_now(FakeEdge("e"), message)
        else:
            asyncio.run(shard.handle(FakeEdge("e"), message))
    except wire.LinkProtocolError:
        return
    raise AssertionError("a request without id was answered")


def test_pushes_decode() -> None:
    assert orjson.loads(wire.pub_push("c", "e", {"data": 1}))["push"]["ch"] == "c"
