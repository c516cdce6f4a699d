"""Surveys without sockets: the shard's fan-out and deadline, an edge's answer, and how an
edge picks the shard to ask."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from skyrelay.config import parse_config
from skyrelay.edge.survey import answer_survey, ask_cluster, survey_order
from skyrelay.link import wire
from skyrelay.link.client import LinkClient, LinkSettings, unavailable
from skyrelay.origin.shard import Shard
from skyrelay.origin.survey import Surveyor
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.ring import Member, Ring
from skyrelay.ring.health import HealthSettings, HealthView


@dataclass(eq=False)
class FakePeer:
    name: str
    answers_surveys: bool = True
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, message: bytes) -> None:
        self.sent.append(orjson.loads(message))


def new_surveyor(
    peers: set[FakePeer], timeout: float, shards: int = 1, links: dict[str, Any] | None = None
) -> Surveyor:
    config = parse_config(
        {
            "shards": [
                {"id": f"o{i}", "url": f"http://127.0.0.1:{9100 + i}"} for i in range(shards)
            ],
            "replication": 1,
            "origin": {"survey_timeout": timeout},
        },
        env={},
    )
    ids = [s.id for s in config.shards]
    ring = Ring([Member(i) for i in ids], 1)
    shard = Shard(config, "o0", ring, HealthView(ids, HealthSettings(), self_id="o0"), {})
    return Surveyor(shard, peers, links or {})  # type: ignore[arg-type]


def answer(surveyor: Surveyor, peer: FakePeer, body: dict[str, Any]) -> None:
    sid = peer.sent[-1]["survey"]["sid"]
    assert surveyor.handles(peer, {"answer": {"sid": sid, "result": body}})


async def test_every_edge_is_asked_and_the_answers_merged() -> None:
    e0, e1, o1 = FakePeer("e0"), FakePeer("e1"), FakePeer("o1", answers_surveys=False)
    surveyor = new_surveyor({e0, e1, o1}, timeout=30)
    task = asyncio.create_task(surveyor.run("channels", {"pattern": "a*"}))
    await asyncio.sleep(0)
    assert e0.sent == [{"survey": {"sid": 1, "kind": "channels", "params": {"pattern": "a*"}}}]
    assert o1.sent == []  # shards do not answer surveys
    answer(surveyor, e0, {"channels": {"ab": 2}})
    answer(surveyor, e1, {"channels": {"ab": 1, "ac": 1}})
    assert await asyncio.wait_for(task, 5) == {"channels": {"ab": 3, "ac": 1}}


async def test_an_edge_that_does_not_answer_is_missing_after_the_deadline() -> None:
    e0, e1 = FakePeer("e0"), FakePeer("e1")
    surveyor = new_surveyor({e0, e1}, timeout=0.05)
    task = asyncio.create_task(surveyor.run("disconnect", {"user": "ann"}))
    await asyncio.sleep(0)
    answer(surveyor, e0, {"disconnected": 2})
    assert await asyncio.wait_for(task, 5) == {"disconnected": 2, "missing": ["e1"]}
    # A late answer to a finished round is dropped quietly.
    answer(surveyor, e1, {"disconnected": 1})


async def test_a_lost_link_ends_the_wait_for_it() -> None:
    e0, e1 = FakePeer("e0"), FakePeer("e1")
    surveyor = new_surveyor({e0, e1}, timeout=60)
    task = asyncio.create_task(surveyor.run("channels", {}))
    await asyncio.sleep(0)
    answer(surveyor, e0, {"channels": {}})
    surveyor.drop_peer(e1)
    assert await asyncio.wait_for(task, 5) == {"channels": {}, "missing": ["e1"]}


async def test_a_survey_request_is_answered_to_the_asker_with_the_shards_own_entry() -> None:
    e0 = FakePeer("e0")
    surveyor = new_surveyor({e0}, timeout=30)
    assert surveyor.handles(e0, {"id": 7, "op": "survey", "kind": "info", "params": {}})
    await asyncio.sleep(0)
    node = {"uid": "u-e0", "name": "e0", "num_clients": 3}
    answer(surveyor, e0, {"node": node})
    for _ in range(10):
        await asyncio.sleep(0)
    response = e0.sent[-1]
    assert response["id"] == 7
    nodes = response["result"]["nodes"]
    assert [n["name"] for n in nodes] == ["e0", "o0"]
    assert nodes[0] == node
    assert nodes[1]["uid"] == surveyor.shard.uid
    assert (nodes[1]["num_clients"], nodes[1]["version"]) == (0, "0.1.0")


async def test_info_asks_the_other_shards_and_names_those_that_fail() -> None:
    loop = asyncio.get_running_loop()

    def link(result: dict[str, Any] | None) -> Any:
        def call(op: str, params: dict[str, Any], timeout: float) -> asyncio.Future[Any]:
            assert op == wire.OP_NODE_INFO
            future = loop.create_future()
            if result is None:
                future.set_exception(unavailable("x", "is unreachable"))
            else:
                future.set_result(result)
            return future

        return SimpleNamespace(call=call)

    links = {"o1": link({"uid": "u1", "name": "o1"}), "o2": link(None)}
    surveyor = new_surveyor(set(), timeout=30, shards=4, links=links)
    result = await asyncio.wait_for(surveyor.run("info", {}), 5)
    assert [n["name"] for n in result["nodes"]] == ["o0", "o1"]
    assert result["missing"] == ["o2", "o3"]  # o3: no link at all


async def test_node_info_and_ordinary_requests() -> None:
    o1 = FakePeer("o1", answers_surveys=False)
    surveyor = new_surveyor({o1}, timeout=1)
    assert surveyor.handles(o1, {"id": 3, "op": "node_info"})
    assert o1.sent[-1]["id"] == 3 and o1.sent[-1]["result"]["name"] == "o0"
    assert not surveyor.handles(o1, {"id": 4, "op": "pub", "ch": "a", "data": {}})
    assert surveyor.handles(o1, {"op": "node_info"})  # no id: dropped, not answered
    assert len(o1.sent) == 1


async def test_a_bad_survey_request_gets_107() -> None:
    e0 = FakePeer("e0")
    surveyor = new_surveyor({e0}, timeout=1)
    surveyor.handles(e0, {"id": 5, "op": "survey", "kind": "everything"})
    for _ in range(5):
        await asyncio.sleep(0)
    assert e0.sent[-1]["error"]["code"] == 107


# The edge side.


@dataclass
class FakeClient:
    id: str
    user: str
    session: str = ""
    subs: dict[str, object | None] = field(default_factory=dict)
    closed: tuple[int, str] | None = None

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def fake_node(*clients: FakeClient) -> Any:
    return SimpleNamespace(id="e0", uid="u-e0", started=0.0, clients={c.id: c for c in clients})


def test_an_edge_answers_each_kind() -> None:
    a = FakeClient("a", "ann", subs={"news": object(), "x": None})
    b = FakeClient("b", "bob", subs={"news": object()})
    c = FakeClient("c", "ann")
    node = fake_node(a, b, c)
    assert answer_survey(node, {"kind": "channels", "params": {"pattern": "n*"}}) == {
        "channels": {"news": 2}
    }
    entry = answer_survey(node, {"kind": "info", "params": {}})["node"]
    assert entry["uid"] == "u-e0" and entry["name"] == "e0"
    assert (entry["num_clients"], entry["num_users"], entry["num_subs"]) == (3, 2, 2)
    order = {"user": "ann", "whitelist": ["c"], "disconnect": {"code": 4000, "reason": "r"}}
    assert answer_survey(node, {"kind": "disconnect", "params": order}) == {"disconnected": 1}
    assert (a.closed, b.closed, c.closed) == ((4000, "r"), None, None)
    with pytest.raises(ReplyError):
        answer_survey(node, {"kind": "nope", "params": {}})
    with pytest.raises(ReplyError):
        answer_survey(node, {"kind": "channels", "params": "x"})


async def test_the_link_answers_a_survey_on_the_spot() -> None:
    def handler(survey: dict[str, Any]) -> dict[str, Any]:
        if survey["kind"] == "boom":
            raise RuntimeError("bug")
        if survey["kind"] == "bad":
            raise ReplyError(ErrorCode.BAD_REQUEST, "bad params")
        return {"channels": {"a": 1}}

    def ignore(*_: Any) -> None:
        pass

    session: Any = None  # never used: the link does not connect in this test
    link = LinkClient(
        "o0", "http://x", "e0", session, LinkSettings(), ignore, ignore, ignore, handler
    )
    for sid, kind in enumerate(("channels", "bad", "boom")):
        link._dispatch(wire.survey(sid, kind, {}))
    answers = [orjson.loads(m)["answer"] for m in link._queue]
    assert answers == [
        {"sid": 0, "result": {"channels": {"a": 1}}},
        {"sid": 1, "error": {"code": 107, "message": "bad params"}},
        {"sid": 2, "error": {"code": 100, "message": "internal"}},
    ]


def test_survey_order_puts_healthy_shards_first_and_rotates() -> None:
    shards = ["o0", "o1", "o2"]
    assert survey_order(shards, lambda _: True, 0) == ["o0", "o1", "o2"]
    assert survey_order(shards, lambda _: True, 4) == ["o1", "o2", "o0"]
    assert survey_order(shards, lambda s: s != "o1", 1) == ["o2", "o0", "o1"]
    assert survey_order([], lambda _: True, 3) == []


class FakeLink:
    def __init__(self, shard: str, up: bool, outcome: dict[str, Any] | ReplyError) -> None:
        self.id, self.is_up, self.outcome = shard, up, outcome
        self.calls = 0

    def call(self, op: str, params: dict[str, Any], timeout: float) -> asyncio.Future[Any]:
        assert op == wire.OP_SURVEY and timeout == 2.0
        self.calls += 1
        future = asyncio.get_running_loop().create_future()
        if isinstance(self.outcome, ReplyError):
            future.set_exception(self.outcome)
        else:
            future.set_result(self.outcome)
        return future


def asking_node(*links: FakeLink, down: frozenset[str] = frozenset()) -> Any:
    router = SimpleNamespace(
        links={link.id: link for link in links},
        health=SimpleNamespace(is_up=lambda s: s not in down),
    )
    config = SimpleNamespace(origin=SimpleNamespace(survey_timeout=1.0))
    return SimpleNamespace(router=router, config=config)


async def test_ask_cluster_passes_over_shards_that_fail() -> None:
    lost = FakeLink("o0", True, unavailable("o0", "did not answer in time"))
    down = FakeLink("o1", False, {"channels": {}})
    good = FakeLink("o2", True, {"channels": {"a": 1}})
    for _ in range(3):  # whichever shard comes first
        node = asking_node(lost, down, good)
        assert await ask_cluster(node, "channels", {}) == {"channels": {"a": 1}}
    assert down.calls == 0


async def test_ask_cluster_raises_a_final_error_and_a_temporary_one_when_nobody_answers() -> None:
    refused = FakeLink("o0", True, ReplyError(ErrorCode.BAD_REQUEST, "no"))
    with pytest.raises(ReplyError) as raised:
        await ask_cluster(asking_node(refused), "info", {})
    assert raised.value.code == 107
    silent = FakeLink("o0", True, unavailable("o0", "did not answer in time"))
    gone = FakeLink("o1", False, {})
    with pytest.raises(ReplyError) as raised:
        await ask_cluster(asking_node(silent, gone, down=frozenset({"o1"})), "info", {})
    assert (raised.value.code, raised.value.temporary) == (100, True)
    assert "o0 did not answer in time" in raised.value.message
    assert "o1 is unreachable" in raised.value.message
