"""More of the server API with the real `cent` client: broadcast, batch, presence."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, token
from tests.support.helpers import channel
from tests.support.wsclient import connect_raw


async def test_broadcast_publishes_to_every_channel(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    channels = [channel() for _ in range(3)]
    client, _ = await connect_raw(session, cluster.ws_url(0), token())
    for ch in channels:
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
    result = await api.broadcast(BroadcastRequest(channels=channels, data={"all": True}))
    assert [r.result.offset for r in result.responses] == [1, 1, 1]  # type: ignore[union-attr]
    pushes = await client.wait_pushes(3)
    assert sorted(p["channel"] for p in pushes) == sorted(channels)
    await client.ws.close()


async def test_batch_runs_commands_in_order(cluster: LocalCluster, api: AsyncClient) -> None:
    ch = channel()
    result = await api.batch(
        BatchRequest(
            requests=[PublishRequest(channel=ch, data={"n": n}) for n in range(3)],
            parallel=False,
        )
    )
    assert [r.offset for r in result.replies] == [1, 2, 3]  # type: ignore[union-attr]


async def test_history_remove_keeps_the_position(cluster: LocalCluster, api: AsyncClient) -> None:
    ch = channel()
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await api.history_remove(HistoryRemoveRequest(channel=ch))
    history = await api.history(HistoryRequest(channel=ch, limit=-1))
    assert (history.publications, history.offset) == ([], 3)
    assert (await api.publish(PublishRequest(channel=ch, data={}))).offset == 4


async def test_presence_through_the_api(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    a, _ = await connect_raw(session, cluster.ws_url(0), token("ann"))
    b, _ = await connect_raw(session, cluster.ws_url(1), token("bob"))
    for client in (a, b):
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
    # Edges report presence to the channel's leader on their own links: wait for both.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        stats = await api.presence_stats(PresenceStatsRequest(channel=ch))
        if (stats.num_clients, stats.num_users) == (2, 2):
            break
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.02)
    presence = await api.presence(PresenceRequest(channel=ch))
    assert sorted(info.user for info in presence.presence.values()) == ["ann", "bob"]
    for client in (a, b):
        await client.ws.close()


async def test_publish_takes_b64data_when_it_holds_json(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    assert "subscribe" in await raw.command("subscribe", {"channel": ch})
    payload = base64.b64encode('{"text":"ünï"}'.encode()).decode()
    url = f"{cluster.edge_url(1)}/api/publish"
    headers = {"X-API-Key": API_KEY}
    async with session.post(url, json={"channel": ch, "b64data": payload}, headers=headers) as r:
        assert "result" in await r.json()
    (push,) = await raw.wait_pushes(1)
    assert push["pub"]["data"] == {"text": "ünï"}
    binary = base64.b64encode(b"\xff\x00").decode()
    async with session.post(url, json={"channel": ch, "b64data": binary}, headers=headers) as r:
        assert (await r.json())["error"] == {"code": 107, "message": "b64data must hold JSON"}
    async with session.post(url, json={"channel": ch, "b64data": "%%%"}, headers=headers) as r:
        assert (await r.json())["error"]["message"] == "b64data must be a base64 string"
    await raw.ws.close()
