"""The protobuf wire format with the real centrifuge-python client (``use_protobuf=True``) and
raw binary frames: the same protocol as JSON, data as bytes, hostile frames refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from cent import AsyncClient, PublishRequest
from centrifuge import Client, ClientEventHandler, ConnectedContext
from centrifuge.protocol import client_pb2 as pb

from skyrelay.client import Client as SkyrelayClient
from skyrelay.protocol.protobuf_wire import delimited, split_delimited
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import Collector, channel, until


def protobuf_client(cluster: LocalCluster, edge: int = 0, **kwargs: object) -> Client:
    kwargs.setdefault("token", token())
    return Client(cluster.ws_url(edge), use_protobuf=True, proxy=None, **kwargs)  # type: ignore[arg-type]


def as_json(pubs: list[tuple[int, object]]) -> list[tuple[int, object]]:
    """Protobuf subscribers get bytes: the JSON publisher's payload, encoded."""
    out = []
    for offset, data in pubs:
        assert isinstance(data, bytes)
        out.append((offset, orjson.loads(data)))
    return out


async def test_subscribe_receive_and_recover_what_was_missed(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel()
    client = protobuf_client(cluster)
    events = Collector()
    sub = client.new_subscription(ch, events=events, recoverable=True)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.subscribed) == 1, what="subscribed")
    assert events.subscribed[0].recoverable and events.subscribed[0].positioned
    await api.publish(PublishRequest(channel=ch, data={"n": 0, "text": "naïve 日本"}))
    await until(lambda: len(events.pubs) == 1, what="first publication")

    await client.disconnect()
    for n in range(1, 11):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await client.connect()
    await until(lambda: len(events.subscribed) == 2, what="resubscribed")
    again = events.subscribed[1]
    assert again.was_recovering and again.recovered
    await api.publish(PublishRequest(channel=ch, data={"n": 11}))
    await until(lambda: len(events.pubs) == 12, what="the missed ten and a marker")
    assert as_json(events.pubs)[0] == (1, {"n": 0, "text": "naïve 日本"})
    assert as_json(events.pubs)[1:] == [(n + 1, {"n": n}) for n in range(1, 12)]
    await client.disconnect()


async def test_publish_history_and_presence(cluster: LocalCluster) -> None:
    ch = f"room:{channel()}"
    client = protobuf_client(cluster)
    events = Collector()
    sub = client.new_subscription(ch, events=events)
    await client.connect()
    await sub.subscribe()
    await until(lambda: bool(events.subscribed), what="subscribed")
    await sub.publish(b'{"from":"protobuf"}')
    await until(lambda: len(events.pubs) == 1, what="its own publication")
    assert events.pubs[0][1] == b'{"from":"protobuf"}'
    presence = await sub.presence()
    assert [info.user for info in presence.clients.values()] == ["alice"]
    stats = await sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (1, 1)
    await client.disconnect()


async def test_history_through_protobuf(cluster: LocalCluster, api: AsyncClient) -> None:
    ch = channel()
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    client = protobuf_client(cluster)
    sub = client.new_subscription(ch)
    await client.connect()
    await sub.subscribe()
    history = await sub.history(limit=10)
    assert [orjson.loads(p.data) for p in history.publications] == [{"n": n} for n in range(3)]
    assert [p.offset for p in history.publications] == [1, 2, 3]
    assert history.offset == 3 and history.epoch
    await client.disconnect()


async def test_json_and_protobuf_subscribers_receive_the_same_publications(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel()
    json_events, pb_events = Collector(), Collector()
    json_client = Client(cluster.ws_url(0), token=token("j"), proxy=None)
    pb_client = protobuf_client(cluster, 1, token=token("p"))
    for client, events in ((json_client, json_events), (pb_client, pb_events)):
        sub = client.new_subscription(ch, events=events)
        await client.connect()
        await sub.subscribe()
        await until(lambda events=events: bool(events.subscribed), what="subscribed")
    sent = [{"n": n, "s": "ünïcødé ✓ 😀" * n} for n in range(20)]
    for data in sent:
        await api.publish(PublishRequest(channel=ch, data=data))
    await until(lambda: len(json_events.pubs) == len(pb_events.pubs) == 20, what="20 each")
    assert json_events.pubs == as_json(pb_events.pubs)
    assert [d for _, d in json_events.pubs] == sent
    await json_client.disconnect()
    await pb_client.disconnect()


class _Connected(ClientEventHandler):
    def __init__(self) -> None:
        self.count = 0

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.count += 1


async def test_an_expiring_token_is_refreshed(cluster: LocalCluster, api: AsyncClient) -> None:
    minted: list[float] = []

    async def get_token() -> str:
        minted.append(time.monotonic())
        return token("refresher", ttl=2)

    connected = _Connected()
    client = protobuf_client(cluster, token=token("refresher", ttl=2), get_token=get_token)
    client.events = connected  # type: ignore[assignment]
    ch = channel()
    events = Collector()
    sub = client.new_subscription(ch, events=events)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(minted) >= 2, what="two refreshes", timeout=15)
    await api.publish(PublishRequest(channel=ch, data={"after": "refresh"}))
    await until(lambda: len(events.pubs) == 1, what="a publication after the refreshes")
    assert connected.count <= 1  # refreshed in place, never reconnected
    await client.disconnect()


# Hostile binary input, on raw sockets.


async def _open(
    session: aiohttp.ClientSession, cluster: LocalCluster
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(cluster.ws_url(0), protocols=("centrifuge-protobuf",))
    assert ws.protocol == "centrifuge-protobuf"
    return ws


def _command(command: pb.Command) -> bytes:
    return delimited(command.SerializeToString())


async def _connected(
    session: aiohttp.ClientSession, cluster: LocalCluster
) -> aiohttp.ClientWebSocketResponse:
    ws = await _open(session, cluster)
    await ws.send_bytes(_command(pb.Command(id=1, connect=pb.ConnectRequest(token=token()))))
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.BINARY
    reply = pb.Reply()
    reply.ParseFromString(split_delimited(msg.data)[0])
    assert reply.connect.client
    return ws


async def test_hostile_binary_frames_close_with_a_bad_request(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    hostile = [
        b"\x05\x08",  # a length past the frame
        b"\x03\x08\x80\x80",  # a truncated varint
        b"\x80",  # a truncated length
        b"\x02\x0a\x00",  # the id as bytes: a wrong wire type
        b"\x03\x2a\x01\x0a",  # a subscribe cut inside
        b"\x02\x08\x07",  # an id and no method
    ]
    for frame in hostile:
        ws = await _connected(session, cluster)
        await ws.send_bytes(frame)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE, frame
        assert msg.data == 3501, frame
    ws = await _connected(session, cluster)
    await ws.send_str('{"id":2,"presence":{"channel":"x"}}')
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 3501)
    assert "text" in msg.extra


async def test_unknown_fields_are_skipped_and_others_are_still_served(
    cluster: LocalCluster, session: aiohttp.ClientSession, api: AsyncClient
) -> None:
    ws = await _connected(session, cluster)
    ch = channel()
    subscribe = pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=ch)).SerializeToString()
    # Field 100 (varint) and field 101 (bytes), neither in client.proto.
    await ws.send_bytes(delimited(subscribe + b"\xa0\x06\x01\xaa\x06\x02hi"))
    msg = await ws.receive(timeout=5)
    reply = pb.Reply()
    reply.ParseFromString(split_delimited(msg.data)[0])
    assert reply.id == 2 and reply.HasField("subscribe")
    await api.publish(PublishRequest(channel=ch, data={"still": "served"}))
    msg = await ws.receive(timeout=5)
    push = pb.Reply()
    push.ParseFromString(split_delimited(msg.data)[0])
    assert orjson.loads(push.push.pub.data) == {"still": "served"}
    await ws.close()


async def test_data_that_is_not_json_is_refused(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ws = await _connected(session, cluster)
    publish = pb.Command(id=2, publish=pb.PublishRequest(channel=channel(), data=b"\xff\x00"))
    await ws.send_bytes(_command(publish))
    msg = await ws.receive(timeout=5)
    reply = pb.Reply()
    reply.ParseFromString(split_delimited(msg.data)[0])
    assert (reply.error.code, reply.error.message) == (107, "data must be JSON")
    await ws.close()


@pytest.mark.parametrize("transport", ["websocket", "http_stream"])
async def test_the_skyrelay_client_speaks_protobuf(
    cluster: LocalCluster, api: AsyncClient, transport: str
) -> None:
    ch = channel()
    edges = [cluster.edge_url(0)]
    async with SkyrelayClient(
        edges, token=token("sdk"), transports=[transport], protocol="protobuf"
    ) as client:
        sub = await client.subscribe(ch)
        await asyncio.wait_for(sub.wait_subscribed(), 15)
        assert client.transport == transport
        await client.publish(ch, {"from": "sdk", "text": "ünï"})
        await asyncio.wait_for(client.flush(), 15)
        await api.publish(PublishRequest(channel=ch, data={"from": "api"}))
        got: list[Any] = []
        async with asyncio.timeout(15):
            async for event in sub:
                got.append((event.offset, event.data))
                if len(got) == 2:
                    break
    assert got == [(1, {"from": "sdk", "text": "ünï"}), (2, {"from": "api"})]
