"""Fossil delta compression with the real SDKs, JSON and protobuf: a document of a few KB
updated one field at a time is rebuilt exactly, version after version, across a reconnect with
recovery, and the frames after the first are a small fraction of the full size."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import orjson
import pytest
from cent import AsyncClient, PublishRequest
from centrifuge import Client
from centrifuge.client import DeltaType
from centrifuge.protocol import client_pb2 as pb

from skyrelay.protocol.protobuf_wire import delimited, split_delimited
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import Collector, channel, until
from tests.support.jsclient import JsClient
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(120)


class Leaderboard:
    """A document of about 3 KB whose versions change one player's score each."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.doc: dict[str, Any] = {
            f"player-{n}": {"name": f"Spieler {n} ✓", "score": 1000 + n, "rank": n}
            for n in range(50)
        }

    def next(self) -> dict[str, Any]:
        key = f"player-{self.rng.randrange(50)}"
        self.doc[key] = {**self.doc[key], "score": self.rng.randrange(10**6)}
        return orjson.loads(orjson.dumps(self.doc))


async def publish_versions(
    api: AsyncClient, ch: str, board: Leaderboard, count: int
) -> list[dict[str, Any]]:
    sent = []
    for _ in range(count):
        version = board.next()
        await api.publish(PublishRequest(channel=ch, data=version, delta=True))
        sent.append(version)
    return sent


@pytest.mark.parametrize("protobuf", [False, True])
async def test_centrifuge_python_rebuilds_every_version_across_a_recovery(
    cluster: LocalCluster, api: AsyncClient, protobuf: bool
) -> None:
    ch = channel()
    board = Leaderboard(1)
    client = Client(cluster.ws_url(0), token=token(), use_protobuf=protobuf, proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, recoverable=True, delta=DeltaType.FOSSIL)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.subscribed) == 1, what="subscribed")
    sent = await publish_versions(api, ch, board, 20)
    await until(lambda: len(events.pubs) == 20, what="20 versions")
    await client.disconnect()
    sent += await publish_versions(api, ch, board, 10)
    await client.connect()
    await until(lambda: len(events.subscribed) == 2, what="resubscribed")
    assert events.subscribed[1].recovered
    sent += await publish_versions(api, ch, board, 10)
    await until(lambda: len(events.pubs) == 40, what="40 versions")
    got = [orjson.loads(d) if isinstance(d, bytes) else d for _, d in events.pubs]
    assert got == sent
    assert [offset for offset, _ in events.pubs] == list(range(1, 41))
    await client.disconnect()


@pytest.mark.parametrize("protobuf", [False, True])
async def test_centrifuge_js_rebuilds_every_version_across_a_recovery(
    cluster: LocalCluster, api: AsyncClient, protobuf: bool
) -> None:
    ch = channel()
    board = Leaderboard(2)
    js = await JsClient.start(cluster.ws_url(0), token("jsdelta"), protobuf=protobuf)
    try:
        await js.call("connect")
        await js.wait(lambda e: e["ev"] == "connected")
        await js.call("subscribe", channel=ch, options={"delta": "fossil"})
        await js.wait(lambda e: e["ev"] == "subscribed")
        sent = await publish_versions(api, ch, board, 15)
        await js.wait(lambda e: e["ev"] == "pub", count=15)
        await js.call("disconnect")
        await js.wait(lambda e: e["ev"] == "disconnected")
        sent += await publish_versions(api, ch, board, 10)
        await js.call("connect")
        subscribed = await js.wait(lambda e: e["ev"] == "subscribed", count=2)
        assert subscribed[1]["recovered"]
        sent += await publish_versions(api, ch, board, 10)
        await js.wait(lambda e: e["ev"] == "pub", count=35)
        assert js.pubs(ch) == [(n + 1, version) for n, version in enumerate(sent)]
        assert not [e for e in js.events if e["ev"] in ("client_error", "sub_error")]
    finally:
        await js.close()


async def test_json_frames_after_the_first_are_small(
    cluster: LocalCluster, session: aiohttp.ClientSession, api: AsyncClient
) -> None:
    ch = channel()
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    reply = await raw.command("subscribe", {"channel": ch, "delta": "fossil"})
    assert reply["subscribe"] == {"delta": True}
    board = Leaderboard(3)
    sent = await publish_versions(api, ch, board, 10)
    pushes = await raw.wait_pushes(10)
    full = len(orjson.dumps(sent[0]))
    assert full > 2500
    first, *rest = (p["pub"] for p in pushes)
    assert "delta" not in first and orjson.loads(first["data"]) == sent[0]
    assert all(p["delta"] is True and len(p["data"]) < full / 20 for p in rest)
    await raw.ws.close()


async def test_protobuf_frames_after_the_first_are_small(
    cluster: LocalCluster, session: aiohttp.ClientSession, api: AsyncClient
) -> None:
    ch = channel()
    ws = await session.ws_connect(cluster.ws_url(0), protocols=("centrifuge-protobuf",))
    command = pb.Command(id=1, connect=pb.ConnectRequest(token=token()))
    await ws.send_bytes(delimited(command.SerializeToString()))
    await ws.receive(timeout=5)
    subscribe = pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=ch, delta="fossil"))
    await ws.send_bytes(delimited(subscribe.SerializeToString()))
    reply = pb.Reply.FromString(split_delimited((await ws.receive(timeout=5)).data)[0])
    assert reply.subscribe.delta
    board = Leaderboard(4)
    sent = await publish_versions(api, ch, board, 10)
    sizes = []
    pubs = []
    while len(pubs) < 10:
        frame = (await ws.receive(timeout=5)).data
        for raw in split_delimited(frame):
            push = pb.Reply.FromString(raw)
            if push.push.HasField("pub"):
                pubs.append(push.push.pub)
                sizes.append(len(raw))
    full = len(orjson.dumps(sent[0]))
    assert not pubs[0].delta and orjson.loads(pubs[0].data) == sent[0]
    assert all(p.delta for p in pubs[1:]) and max(sizes[1:]) < full / 20
    await ws.close()


async def test_an_unknown_delta_type_is_a_bad_request_and_a_refused_one_is_off(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    # The "fo" namespace does not allow deltas: the subscribe works, without them.
    reply = await raw.command("subscribe", {"channel": f"fo:{channel()}", "delta": "fossil"})
    assert reply["subscribe"] == {}
    await raw.ws.send_str(
        orjson.dumps({"id": 9, "subscribe": {"channel": channel(), "delta": "zstd"}}).decode()
    )
    msg = await raw.ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 3501)
