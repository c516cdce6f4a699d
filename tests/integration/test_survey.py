"""The cluster-wide server API methods (channels, info, disconnect) with the real `cent` client,
against a cluster of its own so that node counts are exact."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from cent import (
    AsyncClient,
    CentApiResponseError,
    ChannelsRequest,
    Disconnect,
    DisconnectRequest,
    InfoRequest,
)
from centrifuge import Client, ClientEventHandler, DisconnectedContext

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import (
    API_KEY,
    TOKEN_SECRET,
    api_client,
    free_spec,
    start_cluster,
    token,
)
from tests.support.helpers import channel, until
from tests.support.wsclient import RawClient, connect_raw

T = TypeVar("T")

EDGES = ["e0", "e1"]
ORIGINS = ["o0", "o1", "o2"]


@pytest.fixture(scope="module")
def survey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("survey"))
    yield c
    c.stop()


@pytest.fixture
async def api(survey_cluster: LocalCluster) -> AsyncIterator[AsyncClient]:
    async with api_client(survey_cluster) as client:
        yield client


async def eventually(
    call: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 15.0
) -> T:
    """Call until ``check`` holds (a busy machine may leave an edge out of one answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await call()
        if check(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition never held; last value {value!r}")
        await asyncio.sleep(0.05)


async def subscribed(
    session: aiohttp.ClientSession, url: str, user: str, channels: list[str]
) -> tuple[RawClient, str]:
    client, reply = await connect_raw(session, url, token(user))
    for ch in channels:
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
    return client, reply["connect"]["client"]


async def post(
    session: aiohttp.ClientSession, cluster: LocalCluster, method: str, body: Any, edge: int = 0
) -> dict[str, Any]:
    url = f"{cluster.edge_url(edge)}/api/{method}"
    async with session.post(url, json=body, headers={"X-API-Key": API_KEY}) as resp:
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
    return result


def counts(result: Any) -> dict[str, int]:
    return {name: info.num_clients for name, info in result.channels.items()}


async def test_channels_sums_clients_over_edges_and_filters_by_pattern(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    base = channel()
    one, two, three = f"{base}-one", f"{base}-two", f"{base}-three"
    a, _ = await subscribed(session, survey_cluster.ws_url(0), "ann", [one, two])
    b, _ = await subscribed(session, survey_cluster.ws_url(1), "bob", [one, three])
    c, _ = await subscribed(session, survey_cluster.ws_url(1), "cid", [one])

    async def channels(pattern: str | None) -> dict[str, int]:
        return counts(await api.channels(ChannelsRequest(pattern=pattern)))

    mine = await eventually(lambda: channels(f"{base}-*"), lambda r: r.get(one) == 3)
    assert mine == {one: 3, two: 1, three: 1}
    assert await channels(f"{base}-t*") == {two: 1, three: 1}
    assert await channels(f"{base}-[o]ne") == {one: 3}
    assert await channels(f"{base.upper()}-*") == {}  # case-sensitive
    everything = await channels(None)
    assert {ch: everything.get(ch) for ch in mine} == mine

    # A channel without subscribers is no longer active; counts follow unsubscribes.
    await a.ws.close()
    assert "unsubscribe" in await b.command("unsubscribe", {"channel": one})
    after = await eventually(lambda: channels(f"{base}-*"), lambda r: two not in r)
    assert after == {one: 1, three: 1}
    for client in (b, c):
        await client.ws.close()


async def test_info_lists_every_node_with_its_clients(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    clients = [
        (await subscribed(session, survey_cluster.ws_url(0), user, [ch]))[0]
        for user in ("u1", "u2", "u2")
    ]
    clients.append((await subscribed(session, survey_cluster.ws_url(1), "u3", []))[0])

    def stats(result: Any) -> dict[str, tuple[int, int, int]]:
        return {n.name: (n.num_clients, n.num_users, n.num_subs) for n in result.nodes}

    result = await eventually(
        lambda: api.info(InfoRequest()),
        # Every node, too: one that does not answer within survey_timeout (a loaded
        # machine) is left out of that answer, and the next one asks it again.
        lambda r: (
            stats(r).get("e0") == (3, 2, 3)
            and stats(r).get("e1") == (1, 1, 0)
            and len(r.nodes) == len(EDGES + ORIGINS)
        ),
    )
    names = [n.name for n in result.nodes]
    assert sorted(names) == sorted(EDGES + ORIGINS)
    assert len({n.uid for n in result.nodes}) == len(names)
    for node in result.nodes:
        assert node.version and node.uptime >= 0
        if node.name in ORIGINS:
            assert (node.num_clients, node.num_users) == (0, 0)
    assert not (result.model_extra or {}).get("missing")
    for client in clients:
        await client.ws.close()


class Disconnects(ClientEventHandler):
    def __init__(self) -> None:
        self.codes: list[int] = []

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.codes.append(ctx.code)


async def test_disconnect_closes_a_user_everywhere_with_the_given_code(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    user, other = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    ch = channel()
    targets = [
        (await subscribed(session, survey_cluster.ws_url(i), user, [ch]))[0] for i in (0, 1, 1)
    ]
    bystanders = [
        (await subscribed(session, survey_cluster.ws_url(i), other, [ch]))[0] for i in (0, 1)
    ]
    events = Disconnects()
    sdk = Client(survey_cluster.ws_url(0), events=events, token=token(user), proxy=None)
    await sdk.connect()

    result = await api.disconnect(
        DisconnectRequest(user=user, disconnect=Disconnect(code=4507, reason="moved away"))
    )
    assert not (result.model_extra or {}).get("missing")
    for client in targets:
        assert await client.wait_closed() == 4507
        assert client.close_reason == "moved away"
    await until(lambda: events.codes == [4507], what="the SDK reported 4507")
    for client in bystanders:  # still connected and served
        assert "publish" in await client.command("publish", {"channel": ch, "data": {}})
        await client.ws.close()
    await sdk.disconnect()


async def test_disconnect_defaults_to_3503_and_keeps_the_whitelist(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    a, _ = await subscribed(session, survey_cluster.ws_url(0), user, [])
    b, b_id = await subscribed(session, survey_cluster.ws_url(1), user, [])
    c, _ = await subscribed(session, survey_cluster.ws_url(1), user, [])

    await api.disconnect(DisconnectRequest(user=user, whitelist=[b_id]))
    for client in (a, c):
        assert await client.wait_closed() == 3503
        assert client.close_reason == "force disconnect"
    assert "subscribe" in await b.command("subscribe", {"channel": channel()})

    # One client by id, with the user still required.
    await api.disconnect(DisconnectRequest(user=user, client=b_id))
    assert await b.wait_closed() == 3503


async def test_disconnect_by_session_ends_an_http_stream_with_a_disconnect_push(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    ws, _ = await subscribed(session, survey_cluster.ws_url(0), user, [])
    connect = orjson.dumps({"id": 1, "connect": {"token": token(user)}})
    url = f"{survey_cluster.edge_url(1)}/connection/http_stream"
    headers = {"Content-Type": "application/json"}  # octet-stream would be protobuf
    async with session.post(url, data=connect, headers=headers) as stream, asyncio.timeout(15):
        reply = orjson.loads(await stream.content.readline())
        order = Disconnect(code=4100, reason="stream over")
        await api.disconnect(
            DisconnectRequest(user=user, session=reply["connect"]["session"], disconnect=order)
        )
        lines = [orjson.loads(line) async for line in stream.content if line.strip()]
    assert lines[-1] == {"push": {"disconnect": {"code": 4100, "reason": "stream over"}}}
    # The same user's WebSocket has no such session: it stays.
    assert "subscribe" in await ws.command("subscribe", {"channel": channel()})
    await ws.ws.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user"),
        ({"user": ""}, "user"),
        ({"user": 7}, "user"),
        ({"user": "x", "client": 1}, "client"),
        ({"user": "x", "session": []}, "session"),
        ({"user": "x", "whitelist": "abc"}, "whitelist"),
        ({"user": "x", "whitelist": [1]}, "whitelist"),
        ({"user": "x", "disconnect": 3503}, "disconnect"),
        ({"user": "x", "disconnect": {"code": "3503"}}, "disconnect.code"),
        ({"user": "x", "disconnect": {"code": 1000}}, "disconnect.code"),
        ({"user": "x", "disconnect": {"code": 4000, "reason": 5}}, "disconnect.reason"),
        ({"user": "x", "disconnect": {"code": 4000, "reason": "é" * 62}}, "disconnect.reason"),
    ],
)
async def test_disconnect_rejects_bad_input_naming_the_field(
    survey_cluster: LocalCluster, session: aiohttp.ClientSession, body: Any, field: str
) -> None:
    error = (await post(session, survey_cluster, "disconnect", body))["error"]
    assert error["code"] == 107
    assert error["message"].startswith(f"{field} ")


async def test_channels_rejects_a_pattern_that_is_not_a_string(
    survey_cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    error = (await post(session, survey_cluster, "channels", {"pattern": ["*"]}))["error"]
    assert (error["code"], error["message"]) == (107, "pattern must be a string")
    with pytest.raises(CentApiResponseError) as raised:
        await api.disconnect(DisconnectRequest(user=""))
    assert raised.value.code == 107


async def test_survey_methods_work_in_a_batch(
    survey_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    body = {"commands": [{"info": {}}, {"channels": {"pattern": "none-*"}}], "parallel": True}
    replies = (await post(session, survey_cluster, "batch", body))["replies"]
    assert {n["name"] for n in replies[0]["info"]["nodes"]} >= set(EDGES + ORIGINS)
    assert replies[1] == {"channels": {"channels": {}}}


async def test_an_edge_that_does_not_answer_is_named_not_waited_for(
    survey_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    """A paused edge keeps its links open but answers nothing: the call still returns."""
    survey_cluster.signal("e1", signal.SIGSTOP)
    try:
        result = (await post(session, survey_cluster, "info", {}, edge=0))["result"]
        assert result["missing"] == ["e1"]
        assert sorted(n["name"] for n in result["nodes"]) == sorted(["e0", *ORIGINS])
    finally:
        survey_cluster.signal("e1", signal.SIGCONT)

    async def info() -> dict[str, Any]:
        return (await post(session, survey_cluster, "info", {}, edge=0))["result"]

    await eventually(info, lambda r: "missing" not in r and len(r["nodes"]) == 5)


async def test_a_dead_shard_is_passed_over_and_named(
    survey_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    """Runs last in this module: it kills a shard for good."""
    survey_cluster.signal("o0", signal.SIGKILL)

    async def info() -> dict[str, Any]:
        return (await post(session, survey_cluster, "info", {}, edge=0))["result"]

    # Every call succeeds, whichever shard the edge tries first.
    for _ in range(len(ORIGINS)):
        result = await eventually(info, lambda r: r.get("missing") == ["o0"])
        assert sorted(n["name"] for n in result["nodes"]) == sorted([*EDGES, "o1", "o2"])


async def test_an_edge_goes_by_its_name(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """`skyrelay edge --name` (a pod's name, where every pod runs one [[edges]] entry):
    that name in its log lines and in the server API's info."""
    cluster = LocalCluster(
        free_spec(origins=1, edges=1, replication=1),
        tmp_path,
        TOKEN_SECRET,
        API_KEY,
        log_dir=tmp_path / "logs",
    )
    cluster.write_config()
    try:
        cluster.start_process("o0", ["origin", "--id", "o0"])
        cluster.start_process("e0", ["edge", "--id", "e0", "--name", "skyrelay-edge-7f9c"])
        deadline = time.monotonic() + 30
        cluster.wait_edge_ready(0, deadline)
        body: dict[str, Any] = {}
        while "skyrelay-edge-7f9c" not in str(body):
            assert time.monotonic() < deadline, body
            async with session.post(
                f"{cluster.edge_url(0)}/api/info", json={}, headers={"X-API-Key": API_KEY}
            ) as response:
                body = await response.json()
        names = [node["name"] for node in body["result"]["nodes"]]
        assert sorted(names) == ["o0", "skyrelay-edge-7f9c"], names
        assert " skyrelay-edge-7f9c " in (tmp_path / "logs" / "e0.log").read_text()
    finally:
        cluster.stop()
