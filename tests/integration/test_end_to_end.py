"""client -> edge -> ring -> origin shard -> edge -> client, with real processes and clients."""

from __future__ import annotations

import asyncio

import aiohttp
from cent import AsyncClient, PublishRequest
from centrifuge import Client

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import Collector, channel, metric, until
from tests.support.wsclient import connect_raw


async def subscribe(
    cluster: LocalCluster, edge: int, ch: str, user: str = "alice", **opts: bool
) -> tuple[Client, Collector]:
    client = Client(cluster.ws_url(edge), token=token(user), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, **opts)
    await client.connect()
    await sub.subscribe()
    await until(lambda: bool(events.subscribed), what="subscribed")
    return client, events


async def test_publication_via_api_on_edge1_reaches_subscriber_on_edge0(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel()
    client, events = await subscribe(cluster, 0, ch)
    try:
        result = await api.publish(PublishRequest(channel=ch, data={"text": "hello"}))
        assert result.offset == 1
        assert result.epoch
        await until(lambda: len(events.pubs) == 1, what="the publication")
        assert events.pubs == [(1, {"text": "hello"})]
    finally:
        await client.disconnect()


async def test_two_edges_receive_100_publications_in_the_same_order(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel()
    a, got_a = await subscribe(cluster, 0, ch, "alice")
    b, got_b = await subscribe(cluster, 1, ch, "bob")
    try:
        sent = await asyncio.gather(
            *(api.publish(PublishRequest(channel=ch, data={"n": n})) for n in range(100))
        )
        await until(lambda: len(got_a.pubs) == 100 and len(got_b.pubs) == 100, what="100 each")
        assert got_a.pubs == got_b.pubs
        assert [off for off, _ in got_a.pubs] == list(range(1, 101))
        assert sorted(r.offset for r in sent) == list(range(1, 101))
        assert {tuple(sorted(d.items())) for _, d in got_a.pubs} == {
            (("n", n),) for n in range(100)
        }
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_client_publish_and_history(cluster: LocalCluster) -> None:
    ch = channel()
    client, events = await subscribe(cluster, 0, ch)
    try:
        await client.publish(ch, {"from": "client"})
        await until(lambda: len(events.pubs) == 1, what="own publication")
        history = await client.history(ch, limit=10)
        assert [p.data for p in history.publications] == [{"from": "client"}]
        assert history.offset == 1
        assert history.epoch
    finally:
        await client.disconnect()


async def test_ten_subscribers_share_one_upstream_subscription(
    cluster: LocalCluster, session: aiohttp.ClientSession, api: AsyncClient
) -> None:
    ch = channel()
    edge = cluster.edge_url(0)
    before = await metric(session, edge, "skyrelay_edge_upstream_subscribes_total")
    clients = []
    for i in range(10):
        raw, _ = await connect_raw(session, cluster.ws_url(0), token(f"user{i}"))
        reply = await raw.command("subscribe", {"channel": ch})
        assert reply["subscribe"] == {}
        clients.append(raw)
    after = await metric(session, edge, "skyrelay_edge_upstream_subscribes_total")
    assert after - before == 1
    await api.publish(PublishRequest(channel=ch, data={"x": 1}))
    for raw in clients:
        pushes = await raw.wait_pushes(1)
        assert pushes[0] == {
            "channel": ch,
            "pub": {"data": {"x": 1}, "offset": 1, "time": pushes[0]["pub"]["time"]},
        }
    for raw in clients:
        await raw.ws.close()


async def test_client_publish_with_idempotency_key_is_published_once(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("idem"))
    assert "subscribe" in await raw.command("subscribe", {"channel": ch})
    for _ in range(3):
        reply = await raw.command(
            "publish", {"channel": ch, "data": {"once": True}, "idempotency_key": "k-1"}
        )
        assert reply["publish"] == {}
    assert "publish" in await raw.command("publish", {"channel": ch, "data": {"marker": 1}})
    pushes = await raw.wait_pushes(2)
    assert [p["pub"]["data"] for p in pushes[:2]] == [{"once": True}, {"marker": 1}]
    await raw.ws.close()
