"""Events posted to the app's backend (a small aiohttp app): the exact events of a client's
life, in order; nothing lost while the backend is down, the backlog delivered when it returns;
the disconnects of an edge process's clients after a SIGKILL of that process; and a SIGKILL
of the shard leading the event log."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from centrifuge import Client

from skyrelay.config.settings import EVENT_LOG_CHANNEL
from skyrelay.ring import Member, Ring
from skyrelay.testing.cluster import LocalCluster
from skyrelay.testing.threaded_app import ThreadedApp
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, until
from tests.support.wsclient import RawClient, connect_raw

pytestmark = pytest.mark.timeout(120)

GRACE = 2


class EventSink:
    """The app's backend: keeps every batch posted, answers 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.batches: list[list[dict[str, Any]]] = []
        self.refused = 0
        self.headers: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="down for maintenance")
        self.headers = dict(request.headers)
        self.batches.append(body["events"])
        return web.json_response({})

    def app(self) -> web.Application:
        """The sink served at ``POST /events``."""
        app = web.Application()
        app.router.add_post("/events", self.handle)
        return app

    def events(self) -> list[dict[str, Any]]:
        """Every event once (the first time it came), in the order it first came."""
        seen: set[str] = set()
        out = []
        for batch in self.batches:
            for event in batch:
                if event["id"] not in seen:
                    seen.add(event["id"])
                    out.append(event)
        return out

    def of_client(self, client: str) -> list[tuple[Any, ...]]:
        return [_short(e) for e in self.events() if e.get("client") == client]

    def of_channel(self, ch: str) -> list[tuple[Any, ...]]:
        return [_short(e) for e in self.events() if e.get("channel") == ch]

    def has(self, kind: str, client: str) -> bool:
        return any(e["type"] == kind and e.get("client") == client for e in self.events())


def _short(event: dict[str, Any]) -> tuple[Any, ...]:
    kind = event["type"]
    if kind in ("occupied", "vacated"):
        return (kind,)
    if kind in ("subscribe",):
        return (kind, event["user"])
    if kind in ("unsubscribe", "disconnect"):
        return (kind, event["user"], event["code"], event["reason"])
    return (kind, event["user"], event.get("transport"))


@pytest.fixture(scope="module")
def events_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, EventSink]]:
    sink = EventSink()
    server = ThreadedApp(sink.app())
    port = server.start()
    extra = f"""
[events]
endpoint = "http://127.0.0.1:{port}/events"
headers = ["Authorization: Bearer events-secret"]
timeout = 2
edge_grace = {GRACE}
checkpoint_interval = 0.2
retry_delay = 0.1
max_retry_delay = 0.5
"""
    cluster = start_cluster(tmp_path_factory.mktemp("events"), extra=extra)
    yield cluster, sink
    cluster.stop()
    server.stop()


async def test_a_clients_life_gives_exactly_its_events_in_order(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, sink = events_cluster
    first, second = channel(), channel()
    raw, reply = await connect_raw(session, cluster.ws_url(0), token("ev-alice"))
    client = reply["connect"]["client"]
    # Answered only once in the log: the backend gets it without anything else happening.
    await until(lambda: sink.has("connect", client), 10, "the connect event")
    assert "subscribe" in await raw.command("subscribe", {"channel": first})
    assert "unsubscribe" in await raw.command("unsubscribe", {"channel": first})
    assert "subscribe" in await raw.command("subscribe", {"channel": second})
    await raw.ws.close()
    await until(lambda: sink.has("disconnect", client), 10, "the disconnect event")
    closed = ("ev-alice", 3000, "connection closed")
    assert sink.of_client(client) == [
        ("connect", "ev-alice", "websocket"),
        ("subscribe", "ev-alice"),
        ("unsubscribe", "ev-alice", 0, "unsubscribed"),
        ("subscribe", "ev-alice"),
        ("unsubscribe", *closed),
        ("disconnect", *closed),
    ]
    assert sink.of_channel(first) == [
        ("occupied",),
        ("subscribe", "ev-alice"),
        ("unsubscribe", "ev-alice", 0, "unsubscribed"),
        ("vacated",),
    ]
    assert sink.of_channel(second) == [
        ("occupied",),
        ("subscribe", "ev-alice"),
        ("unsubscribe", *closed),
        ("vacated",),
    ]
    assert sink.headers["Authorization"] == "Bearer events-secret"
    event = next(e for e in sink.events() if e.get("client") == client)
    assert isinstance(event["offset"], int) and isinstance(event["time"], int)


async def test_centrifuge_python_s_life_and_its_server_side_channel(
    events_cluster: tuple[LocalCluster, EventSink],
) -> None:
    """The real SDK, with a token that subscribes it server-side to a channel: that channel's
    subscribe comes with the connect, before any other."""
    cluster, sink = events_cluster
    own, ch = channel(), channel()
    client = Client(cluster.ws_url(1), token=token("ev-sdk", channels=[own]), proxy=None)
    sub = client.new_subscription(ch)
    await client.connect()
    await sub.subscribe()
    await until(lambda: sink.of_channel(ch)[-1:] == [("subscribe", "ev-sdk")], 10, "subscribe")
    await sub.unsubscribe()
    await client.disconnect()
    await until(lambda: ("vacated",) in sink.of_channel(own), 10, "the disconnect")
    kinds = [e for e in sink.events() if e.get("user") == "ev-sdk" or e.get("channel") in (own, ch)]
    assert [(e["type"], e.get("channel")) for e in kinds] == [
        ("connect", None),
        ("occupied", own),
        ("subscribe", own),
        ("occupied", ch),
        ("subscribe", ch),
        ("unsubscribe", ch),
        ("vacated", ch),
        ("unsubscribe", own),
        ("vacated", own),
        ("disconnect", None),
    ]


async def test_a_unidirectional_connection_has_its_events_too(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, sink = events_cluster
    connect = json.dumps({"token": token("ev-uni")})
    url = f"{cluster.edge_url(0)}/connection/uni_sse"
    async with session.get(url, params={"cf_connect": connect}) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                first = json.loads(line[6:])
                break
    client = first["connect"]["client"]
    await until(lambda: sink.has("disconnect", client), 10, "the disconnect")
    assert [e[:3] for e in sink.of_client(client)] == [
        ("connect", "ev-uni", "uni_sse"),
        ("disconnect", "ev-uni", 3000),
    ]


async def test_occupied_and_vacated_count_the_whole_cluster(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, sink = events_cluster
    ch = channel()
    one, _ = await connect_raw(session, cluster.ws_url(0), token("ev-one"))
    two, _ = await connect_raw(session, cluster.ws_url(1), token("ev-two"))
    assert "subscribe" in await one.command("subscribe", {"channel": ch})
    assert "subscribe" in await two.command("subscribe", {"channel": ch})
    assert "unsubscribe" in await one.command("unsubscribe", {"channel": ch})
    await two.command("unsubscribe", {"channel": ch})
    await until(lambda: ("vacated",) in sink.of_channel(ch), 10, "vacated")
    assert [e[0] for e in sink.of_channel(ch)] == [
        "occupied",
        "subscribe",
        "subscribe",
        "unsubscribe",
        "unsubscribe",
        "vacated",
    ]
    await one.ws.close()
    await two.ws.close()


async def test_nothing_is_lost_while_the_backend_is_down(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, sink = events_cluster
    sink.down = True
    refused = sink.refused
    try:
        clients: list[str] = []
        ch = channel()
        for i in range(30):
            raw, reply = await connect_raw(session, cluster.ws_url(i % 2), token(f"ev-down-{i}"))
            clients.append(reply["connect"]["client"])
            assert "subscribe" in await raw.command("subscribe", {"channel": ch})
            await raw.ws.close()
        await until(lambda: sink.refused > refused + 3, 10, "the backend refusing batches")
        assert not any(sink.has("connect", c) for c in clients)
    finally:
        sink.down = False
    await until(lambda: all(sink.has("disconnect", c) for c in clients), 20, "the backlog")
    for client, user in zip(clients, (f"ev-down-{i}" for i in range(30)), strict=True):
        assert [e[0] for e in sink.of_client(client)] == [
            "connect",
            "subscribe",
            "unsubscribe",
            "disconnect",
        ], user


async def test_a_killed_edge_still_reports_its_clients_gone(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, sink = events_cluster
    ch = channel()
    held: list[RawClient] = []
    clients: list[str] = []
    for i in range(5):
        raw, reply = await connect_raw(session, cluster.ws_url(1), token(f"ev-kill-{i}"))
        assert "subscribe" in await raw.command("subscribe", {"channel": ch})
        held.append(raw)
        clients.append(reply["connect"]["client"])
    await until(lambda: len(sink.of_channel(ch)) == 6, 10, "the subscribes")
    cluster.signal("e1", signal.SIGKILL)
    try:
        await until(lambda: all(sink.has("disconnect", c) for c in clients), 30, "disconnects")
        gone = ("edge gone",)
        for client, i in zip(clients, range(5), strict=True):
            user = f"ev-kill-{i}"
            assert sink.of_client(client) == [
                ("connect", user, "websocket"),
                ("subscribe", user),
                ("unsubscribe", user, 3000, *gone),
                ("disconnect", user, 3000, *gone),
            ]
        assert sink.of_channel(ch)[0] == ("occupied",)
        assert sink.of_channel(ch)[-1] == ("vacated",)
    finally:
        for raw in held:
            await raw.ws.close()
        await asyncio.to_thread(cluster.processes["e1"].wait)
        cluster.restart("e1")  # from this thread: a child dies with the thread that started it


async def test_a_stopping_edge_reports_its_clients_shutdown_itself(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    """SIGTERM: the edge tells its clients to reconnect elsewhere (3001) and writes their
    disconnects to the log before it exits, so they say "shutdown", not "edge gone"."""
    cluster, sink = events_cluster
    raw, reply = await connect_raw(session, cluster.ws_url(0), token("ev-drained"))
    client = reply["connect"]["client"]
    cluster.signal("e0", signal.SIGTERM)
    try:
        assert await raw.wait_closed(10) == 3001
        await asyncio.to_thread(cluster.processes["e0"].wait)
        await until(lambda: sink.has("disconnect", client), 10, "the disconnect")
        assert sink.of_client(client)[-1] == ("disconnect", "ev-drained", 3001, "shutdown")
    finally:
        cluster.restart("e0")


async def test_an_edge_back_from_a_pause_drops_the_clients_it_was_reported_gone_with(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    """Frozen past the grace, the process was reported gone with its client; once it runs
    again the log refuses it, so it drops that client (3010) and speaks under a new name:
    the reconnect is a new connection, and the backend's view stays true."""
    cluster, sink = events_cluster
    raw, reply = await connect_raw(session, cluster.ws_url(1), token("ev-paused"))
    client = reply["connect"]["client"]
    await until(lambda: sink.has("connect", client), 10, "the connect")
    cluster.signal("e1", signal.SIGSTOP)
    try:
        await until(lambda: sink.has("disconnect", client), 30, "the edge reported gone")
    finally:
        cluster.signal("e1", signal.SIGCONT)
    assert sink.of_client(client)[-1] == ("disconnect", "ev-paused", 3000, "edge gone")
    assert await raw.wait_closed(30) == 3010
    again, reply = await connect_raw(session, cluster.ws_url(1), token("ev-paused"))
    await until(lambda: sink.has("connect", reply["connect"]["client"]), 10, "the reconnect")
    await again.ws.close()
    assert [e[0] for e in sink.of_client(client)] == ["connect", "disconnect"]


async def test_the_log_survives_a_sigkill_of_its_leader(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    """With the backend down the backlog is only in the log; its leader dies; the new leader
    delivers all of it, from the last checkpoint (some events perhaps twice, never lost)."""
    cluster, sink = events_cluster
    ring = Ring([Member(f"o{i}", 1) for i in range(3)], 3)
    leader = ring.replicas(EVENT_LOG_CHANNEL)[0]
    sink.down = True
    clients: list[str] = []
    try:
        for i in range(10):
            raw, reply = await connect_raw(session, cluster.ws_url(0), token(f"ev-fail-{i}"))
            clients.append(reply["connect"]["client"])
            await raw.ws.close()
        cluster.signal(leader, signal.SIGKILL)
        await asyncio.to_thread(cluster.processes[leader].wait)
        for i in range(10, 20):  # the log keeps taking events, at its new leader
            raw, reply = await connect_raw(session, cluster.ws_url(0), token(f"ev-fail-{i}"))
            assert "connect" in reply, reply
            clients.append(reply["connect"]["client"])
            await raw.ws.close()
    finally:
        sink.down = False
    try:
        await until(lambda: all(sink.has("disconnect", c) for c in clients), 30, "the backlog")
        for client in clients:
            assert [e[0] for e in sink.of_client(client)] == ["connect", "disconnect"]
    finally:
        cluster.restart(leader)


async def test_clients_and_the_api_cannot_reach_the_log(
    events_cluster: tuple[LocalCluster, EventSink], session: aiohttp.ClientSession
) -> None:
    cluster, _ = events_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("ev-nosy"))
    for method in ("subscribe", "publish", "history"):
        reply = await raw.command(method, {"channel": EVENT_LOG_CHANNEL, "data": {}})
        assert reply["error"]["code"] == 102, (method, reply)
    await raw.ws.close()
    async with session.post(
        f"{cluster.edge_url(0)}/api/history",
        json={"channel": EVENT_LOG_CHANNEL, "limit": 10},
        headers={"X-API-Key": API_KEY},
    ) as response:
        body = await response.json()
        assert body["error"]["code"] == 102, body


async def test_only_the_types_asked_for_are_posted(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    sink = EventSink()
    server = ThreadedApp(sink.app())
    port = server.start()
    extra = f"""
[events]
endpoint = "http://127.0.0.1:{port}/events"
types = ["occupied", "vacated"]
checkpoint_interval = 0.2
"""
    cluster = start_cluster(
        tmp_path_factory.mktemp("events-types"), origins=1, edges=1, replication=1, extra=extra
    )
    try:
        ch = channel()
        raw, _ = await connect_raw(session, cluster.ws_url(0), token("ev-typed"))
        assert "subscribe" in await raw.command("subscribe", {"channel": ch})
        await raw.ws.close()
        await until(lambda: ("vacated",) in sink.of_channel(ch), 10, "vacated")
        assert {e["type"] for e in sink.events()} == {"occupied", "vacated"}
    finally:
        cluster.stop()
        server.stop()
