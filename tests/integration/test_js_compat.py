"""centrifuge-js (npm `centrifuge` 5.8.0) under Node.js against a real cluster."""

from __future__ import annotations

import aiohttp
import pytest
from cent import AsyncClient, PublishRequest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import channel
from tests.support.jsclient import JsClient
from tests.support.wsclient import connect_raw


def endpoints(cluster: LocalCluster, transport: str) -> object:
    base = cluster.edge_url(0)
    if transport == "websocket":
        return cluster.ws_url(0)
    return [{"transport": transport, "endpoint": f"{base}/connection/{transport}"}]


@pytest.mark.parametrize(
    ("transport", "protobuf"),
    [
        ("websocket", False),
        ("http_stream", False),
        ("sse", False),
        # The protobuf build (SSE stays JSON, as in Centrifugo).
        ("websocket", True),
        ("http_stream", True),
    ],
)
async def test_centrifuge_js_round_trip(
    cluster: LocalCluster,
    api: AsyncClient,
    session: aiohttp.ClientSession,
    transport: str,
    protobuf: bool,
) -> None:
    ch = channel()
    js = await JsClient.start(
        endpoints(cluster, transport),
        token("jsuser"),
        f"{cluster.edge_url(0)}/emulation",
        protobuf=protobuf,
    )
    try:
        await js.call("connect")
        (connected,) = await js.wait(lambda e: e["ev"] == "connected")
        assert connected["transport"] == transport
        await js.call("subscribe", channel=ch)
        await js.wait(lambda e: e["ev"] == "subscribed")

        await api.publish(PublishRequest(channel=ch, data={"n": 1}))
        await js.wait(lambda e: e["ev"] == "pub")
        await js.call("publish", channel=ch, data={"n": 2})
        await js.wait(lambda e: e["ev"] == "pub", count=2)
        assert js.pubs(ch) == [(1, {"n": 1}), (2, {"n": 2})]
        history = await js.call("history", channel=ch, limit=10)
        assert [p["data"] for p in history["publications"]] == [{"n": 1}, {"n": 2}]

        # Presence and join/leave work across edges: another user joins on edge 1.
        other, _ = await connect_raw(session, cluster.ws_url(1), token("otheruser"))
        assert "subscribe" in await other.command("subscribe", {"channel": ch})
        (joined,) = await js.wait(lambda e: e["ev"] == "join" and e["user"] == "otheruser")
        assert joined["channel"] == ch
        present = await js.call("presence", channel=ch)
        assert present["users"] == ["jsuser", "otheruser"]
        stats = await js.call("presence_stats", channel=ch)
        assert stats == {"numClients": 2, "numUsers": 2}
        await other.ws.close()
        await js.wait(lambda e: e["ev"] == "leave" and e["user"] == "otheruser")

        # Forced reconnect: what is published meanwhile is recovered.
        await js.call("disconnect")
        await js.wait(lambda e: e["ev"] == "disconnected")
        for n in range(3, 6):
            await api.publish(PublishRequest(channel=ch, data={"n": n}))
        await js.call("connect")
        subscribed = await js.wait(lambda e: e["ev"] == "subscribed", count=2)
        assert subscribed[1]["wasRecovering"] and subscribed[1]["recovered"]
        await js.wait(lambda e: e["ev"] == "pub", count=5)
        assert js.pubs(ch) == [(n, {"n": n}) for n in range(1, 6)]
    finally:
        await js.close()


@pytest.mark.parametrize("transport", ["websocket", "http_stream"])
async def test_centrifuge_js_protobuf_refreshes_its_token(
    cluster: LocalCluster, api: AsyncClient, transport: str
) -> None:
    ch = channel()
    js = await JsClient.start(
        endpoints(cluster, transport),
        token("refresher", ttl=2),
        f"{cluster.edge_url(0)}/emulation",
        protobuf=True,
        refresh_tokens=True,
    )
    try:
        await js.call("connect")
        await js.wait(lambda e: e["ev"] == "connected")
        await js.call("subscribe", channel=ch)
        await js.wait(lambda e: e["ev"] == "subscribed")
        for count in (1, 2):
            await js.wait(lambda e, n=count: e["ev"] == "get_token" and e["count"] == n)
            await js.call("token", token=token("refresher", ttl=2))
        await api.publish(PublishRequest(channel=ch, data={"after": "refresh"}))
        await js.wait(lambda e: e["ev"] == "pub")
        assert js.pubs(ch) == [(1, {"after": "refresh"})]
        # Refreshed in place: one connection all along.
        assert [e["ev"] for e in js.events].count("connected") == 1
    finally:
        await js.close()
