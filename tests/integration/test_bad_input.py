"""Tokens that must be refused, and malformed frames: clear codes, and the edge keeps serving."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from skyrelay.cluster import LocalCluster
from tests.integration.conftest import API_KEY, TOKEN_SECRET, token
from tests.integration.helpers import channel
from tests.integration.wsclient import RawClient, connect_raw


async def _connect(session: aiohttp.ClientSession, url: str, tok: str) -> RawClient:
    ws = await session.ws_connect(url, autoclose=False)
    client = RawClient(ws)
    await client.send_raw(f'{{"id":1,"connect":{{"token":"{tok}"}}}}')
    return client


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(
            jwt.encode({"sub": "x"}, "wrong-secret-0123456789abcdef0123", "HS256"),
            id="wrong-signature",
        ),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param(jwt.encode({"sub": "x"}, None, "none"), id="alg-none"),
        pytest.param(
            jwt.encode({"sub": "x", "channel": "c"}, TOKEN_SECRET, "HS256"), id="subscription-token"
        ),
    ],
)
async def test_invalid_token_is_disconnected_with_3500(
    cluster: LocalCluster, session: aiohttp.ClientSession, bad_token: str
) -> None:
    client = await _connect(session, cluster.ws_url(0), bad_token)
    assert await client.wait_closed() == 3500
    assert client.close_reason == "invalid token"


async def test_expired_token_gets_error_109(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    expired = jwt.encode({"sub": "x", "exp": int(time.time()) - 10}, TOKEN_SECRET, "HS256")
    client = await _connect(session, cluster.ws_url(0), expired)
    reply = await client.reply(1)
    assert reply["error"] == {"code": 109, "message": "token expired"}
    await client.ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("{not json", id="malformed-json"),
        pytest.param("[1,2,3]", id="not-an-object"),
        pytest.param('{"id":5,"frobnicate":{}}', id="unknown-command"),
        pytest.param('{"id":"x","publish":{}}', id="id-not-integer"),
        pytest.param('{"id":2,"subscribe":{"channel":"a"}}\n\n', id="empty-line"),
        pytest.param('{"id":2,"subscribe":"chat"}', id="params-not-object"),
    ],
)
async def test_malformed_frame_gets_3501_and_edge_keeps_serving(
    cluster: LocalCluster, session: aiohttp.ClientSession, frame: str
) -> None:
    bystander, _ = await connect_raw(session, cluster.ws_url(0), token("bystander"))
    ch = channel()
    assert "subscribe" in await bystander.command("subscribe", {"channel": ch})

    offender, reply = await connect_raw(session, cluster.ws_url(0), token("offender"))
    assert "connect" in reply
    await offender.send_raw(frame)
    assert await offender.wait_closed() == 3501

    async with session.post(
        f"{cluster.edge_url(0)}/api/publish",
        json={"channel": ch, "data": {"still": "serving"}},
        headers={"X-API-Key": API_KEY},
    ) as resp:
        assert resp.status == 200
    pushes = await bystander.wait_pushes(1)
    assert pushes[0]["pub"]["data"] == {"still": "serving"}
    await bystander.ws.close()


async def test_command_before_connect_is_refused(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ws = await session.ws_connect(cluster.ws_url(0), autoclose=False)
    client = RawClient(ws)
    await client.send_raw('{"id":1,"subscribe":{"channel":"x"}}')
    assert await client.wait_closed() == 3501


async def test_oversized_message_is_closed_with_1009(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, _ = await connect_raw(session, cluster.ws_url(0), token())
    await client.send_raw('{"id":2,"publish":{"channel":"c","data":"' + "x" * 70000 + '"}}')
    assert await client.wait_closed() == 1009


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b'{"channel":"c","data":{}}', 401),
        ({"X-API-Key": "wrong"}, b'{"channel":"c","data":{}}', 401),
        ({"X-API-Key": API_KEY}, b"{oops", 400),
        ({"X-API-Key": API_KEY}, b"[]", 400),
    ],
)
async def test_server_api_rejects_bad_requests(
    cluster: LocalCluster,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    async with session.post(f"{cluster.edge_url(0)}/api/publish", data=body, headers=headers) as r:
        assert r.status == status
        if status == 400:
            assert (await r.json())["error"]["code"] == 107


async def test_server_api_names_missing_fields(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{cluster.edge_url(0)}/api/publish", json={"data": {}}, headers={"X-API-Key": API_KEY}
    ) as r:
        assert r.status == 200
        assert await r.json() == {"error": {"code": 107, "message": "channel is required"}}
    async with session.post(
        f"{cluster.edge_url(0)}/api/nope", json={}, headers={"X-API-Key": API_KEY}
    ) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == 104


async def test_deeply_nested_data_is_refused_and_the_link_survives(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    deep = "[" * 300 + "]" * 300
    client, _ = await connect_raw(session, cluster.ws_url(0), token())
    ch = channel()
    assert "subscribe" in await client.command("subscribe", {"channel": ch})
    await client.send_raw(f'{{"id":9,"publish":{{"channel":"{ch}","data":{deep}}}}}')
    reply = await client.reply(9)
    assert reply["error"]["code"] == 107
    async with session.post(
        f"{cluster.edge_url(0)}/api/publish",
        data=f'{{"channel":"{ch}","data":{deep}}}',
        headers={"X-API-Key": API_KEY},
    ) as resp:
        assert (await resp.json())["error"]["code"] == 107
    # The connection and the edge link still work.
    assert "publish" in await client.command("publish", {"channel": ch, "data": {"ok": 1}})
    pushes = await client.wait_pushes(1)
    assert pushes[0]["pub"]["data"] == {"ok": 1}
    await client.ws.close()


async def test_channel_name_rules_and_unknown_namespaces(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, _ = await connect_raw(session, cluster.ws_url(0), token())
    assert "subscribe" in await client.command("subscribe", {"channel": "slug:good-name-1"})
    for bad in ("slug:Bad_Name", "slug:" + "x" * 40, "nonexistent:chat"):
        reply = await client.command("subscribe", {"channel": bad})
        assert reply["error"]["code"] == 102, bad
    reply = await client.command("subscribe", {"channel": "bad\u0000name"})
    assert reply["error"]["code"] == 107
    await client.ws.close()
