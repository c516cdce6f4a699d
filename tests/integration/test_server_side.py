"""Connecting without a token where the operator allows it, the development-only insecure mode,
and server-side subscriptions (the token's `channels` and `subs`, personal channels) on
bidirectional connections: listed in the connect reply and recovered through it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from cent import AsyncClient, PublishRequest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ServerPublicationContext,
    ServerSubscribedContext,
)

from skyrelay.testing.cluster import LocalCluster
from skyrelay.tokens import mint_token
from tests.integration.conftest import TOKEN_SECRET, api_client, start_cluster
from tests.support.helpers import Collector, channel, until
from tests.support.jsclient import JsClient
from tests.support.wsclient import RawClient, connect_raw

OPEN_NAMESPACES = """
[namespaces.members]
allow_subscribe = "client"

[namespaces.inbox]
personal_channel = true
history_size = 50
history_ttl = 300
"""


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Anonymous connections allowed; every user has a personal `inbox:#user` channel."""
    c = start_cluster(
        tmp_path_factory.mktemp("open"),
        origins=1,
        edges=2,
        replication=1,
        edge_toml="allow_anonymous_connect_without_token = true",
        extra=OPEN_NAMESPACES,
    )
    yield c
    c.stop()


@pytest.fixture
async def open_api(open_cluster: LocalCluster) -> AsyncIterator[AsyncClient]:
    async with api_client(open_cluster) as client:
        yield client


async def connect_anonymous(
    session: aiohttp.ClientSession, url: str
) -> tuple[RawClient, dict[str, Any]]:
    ws = await session.ws_connect(url, autoclose=False)
    raw = RawClient(ws)
    return raw, await raw.command("connect", {})


# Anonymous connections.


async def test_anonymous_connect_is_refused_where_not_allowed(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ws = await session.ws_connect(cluster.ws_url(0), autoclose=False)
    raw = RawClient(ws)
    await raw.send_raw('{"id":1,"connect":{}}')
    assert await raw.wait_closed() == 3500


async def test_anonymous_connect_gets_what_namespaces_give_anonymous_connections(
    open_cluster: LocalCluster, open_api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    raw, reply = await connect_anonymous(session, open_cluster.ws_url(0))
    assert reply["connect"]["client"] and "subs" not in reply["connect"]
    public = channel()
    assert "subscribe" in await raw.command("subscribe", {"channel": public})
    members = await raw.command("subscribe", {"channel": channel("members:")})
    assert members["error"]["code"] == 103
    await open_api.publish(PublishRequest(channel=public, data={"hello": "all"}))
    pushes = await raw.wait_pushes(1)
    assert pushes[0]["pub"]["data"] == {"hello": "all"}
    # A token, when sent, is still verified.
    ws = await session.ws_connect(open_cluster.ws_url(0), autoclose=False)
    bad = RawClient(ws)
    await bad.send_raw('{"id":1,"connect":{"token":"not-a-token"}}')
    assert await bad.wait_closed() == 3500
    await raw.ws.close()


async def test_sdks_connect_without_a_token_where_allowed(
    open_cluster: LocalCluster, open_api: AsyncClient
) -> None:
    ch = channel()
    client = Client(open_cluster.ws_url(0), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.subscribed) == 1, what="python subscribed")

    js = await JsClient.start(open_cluster.ws_url(1), "")
    try:
        await js.call("connect")
        await js.call("subscribe", channel=ch)
        await js.wait(lambda e: e["ev"] == "subscribed")
        await open_api.publish(PublishRequest(channel=ch, data={"n": 1}))
        await js.wait(lambda e: e["ev"] == "pub")
        await until(lambda: len(events.pubs) == 1, what="python publication")
    finally:
        await js.close()
        await client.disconnect()


# Server-side subscriptions.


def server_token(user: str, **claims: Any) -> str:
    return mint_token(TOKEN_SECRET, user, now=time.time(), ttl=3600, extra=claims)


async def test_server_side_subscriptions_are_listed_in_the_connect_reply(
    open_cluster: LocalCluster, open_api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    news, feed = channel(), channel()
    tok = server_token("erin", channels=[news], subs={feed: {"data": {"welcome": True}}})
    raw, reply = await connect_raw(session, open_cluster.ws_url(0), tok)
    subs = reply["connect"]["subs"]
    assert set(subs) == {news, feed, "inbox:#erin"}
    assert subs[feed]["data"] == {"welcome": True}
    assert subs["inbox:#erin"]["recoverable"] is True
    for ch in (news, feed, "inbox:#erin"):
        await open_api.publish(PublishRequest(channel=ch, data={"to": ch}))
    pushes = await raw.wait_pushes(3)
    assert {p["channel"]: p["pub"]["data"]["to"] for p in pushes} == {
        news: news,
        feed: feed,
        "inbox:#erin": "inbox:#erin",
    }
    # Already subscribed server-side: a client-side subscribe is refused.
    assert (await raw.command("subscribe", {"channel": news}))["error"]["code"] == 105
    await raw.ws.close()


async def test_server_side_subscriptions_recover_through_the_connect_command(
    open_cluster: LocalCluster, open_api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    raw, reply = await connect_raw(session, open_cluster.ws_url(0), server_token("finn"))
    first = reply["connect"]["subs"]["inbox:#finn"]
    await raw.ws.close()
    for n in range(3):
        await open_api.publish(PublishRequest(channel="inbox:#finn", data={"n": n}))
    ws = await session.ws_connect(open_cluster.ws_url(1), autoclose=False)
    again = RawClient(ws)
    position = {"recover": True, "offset": first["offset"], "epoch": first["epoch"]}
    params = {"token": server_token("finn"), "subs": {"inbox:#finn": position}}
    result = (await again.command("connect", params))["connect"]["subs"]["inbox:#finn"]
    assert result["recovered"] is True and result["was_recovering"] is True
    assert [p["data"] for p in result["publications"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    await again.ws.close()


class ServerEvents(ClientEventHandler):
    def __init__(self) -> None:
        self.connected: list[ConnectedContext] = []
        self.subscribed: list[ServerSubscribedContext] = []
        self.pubs: list[tuple[str, int, Any]] = []

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connected.append(ctx)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.pubs.append((ctx.channel, ctx.pub.offset, ctx.pub.data))


async def test_sdks_see_server_side_subscriptions_and_recover_them(
    open_cluster: LocalCluster, open_api: AsyncClient
) -> None:
    news = channel("inbox:")  # a channel with history, so it is recoverable
    events = ServerEvents()
    client = Client(
        open_cluster.ws_url(0),
        token=server_token("gina", channels=[news]),
        events=events,
        proxy=None,
    )
    await client.connect()
    await until(lambda: len(events.subscribed) == 2, what="python's server-side subscriptions")
    assert {s.channel for s in events.subscribed} == {news, "inbox:#gina"}
    await open_api.publish(PublishRequest(channel=news, data={"n": 0}))
    await until(lambda: len(events.pubs) == 1, what="a server-side publication")
    await client.disconnect()
    for n in range(1, 4):
        await open_api.publish(PublishRequest(channel=news, data={"n": n}))
    await client.connect()
    await until(lambda: len(events.pubs) == 4, what="the missed publications, recovered")
    assert [p[2] for p in events.pubs] == [{"n": n} for n in range(4)]
    assert [p[1] for p in events.pubs] == [1, 2, 3, 4]
    recovered = [s for s in events.subscribed[2:] if s.channel == news]
    assert recovered and recovered[0].recovered
    await client.disconnect()

    js = await JsClient.start(open_cluster.ws_url(1), server_token("hana", channels=[news]))
    try:
        await js.call("connect")
        subscribed = await js.wait(lambda e: e["ev"] == "server_subscribed", count=2)
        assert {e["channel"] for e in subscribed} == {news, "inbox:#hana"}
        await open_api.publish(PublishRequest(channel=news, data={"n": 4}))
        (pub,) = await js.wait(lambda e: e["ev"] == "server_pub")
        assert pub["channel"] == news and pub["offset"] == 5
        await js.call("disconnect")
        await js.wait(lambda e: e["ev"] == "disconnected")
        await open_api.publish(PublishRequest(channel=news, data={"n": 5}))
        await js.call("connect")
        await js.wait(lambda e: e["ev"] == "server_pub", count=2)
        assert [e["offset"] for e in js.events if e["ev"] == "server_pub"] == [5, 6]
        again = [e for e in js.events if e["ev"] == "server_subscribed" and e["channel"] == news]
        assert again[-1]["recovered"] is True
    finally:
        await js.close()


# Insecure mode (development only).


@pytest.fixture(scope="module")
def insecure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("insecure"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml="insecure = true",
    )
    yield c
    c.stop()


async def test_insecure_mode_lets_any_connection_do_anything_and_says_so(
    insecure_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, reply = await connect_anonymous(session, insecure_cluster.ws_url(0))
    assert "connect" in reply
    private = channel("$")
    assert "subscribe" in await raw.command("subscribe", {"channel": private})
    other = channel()  # not subscribed, yet allowed to publish and read history
    assert "publish" in await raw.command("publish", {"channel": other, "data": {"x": 1}})
    history = await raw.command("history", {"channel": other, "limit": 10})
    assert [p["data"] for p in history["history"]["publications"]] == [{"x": 1}]
    await raw.ws.close()
    assert insecure_cluster.log_dir is not None
    assert "edge.insecure is on" in (insecure_cluster.log_dir / "e0.log").read_text()
