"""The bad-input catalogue (docs/security.md), against a running cluster. Every hostile input
gets its documented answer, and in every test a bystander keeps receiving publications in
order: one client's bad input never costs another client anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import jwt
import orjson
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, TOKEN_SECRET, start_cluster, token
from tests.support.helpers import channel
from tests.support.hostile import (
    Bystander,
    close_code,
    frame,
    http_answer,
    hung_up,
    open_tcp,
    open_websocket,
)
from tests.support.wsclient import RawClient, connect_raw

pytestmark = pytest.mark.timeout(120)

PUBLISH_RATE = 5
MAX_SUBSCRIPTIONS = 8


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("hostile"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml=(
            f"client_publish_rate = {PUBLISH_RATE}\n"
            f"max_subscriptions_per_connection = {MAX_SUBSCRIPTIONS}\n"
            "http_header_timeout = 2\nhttp_body_timeout = 1"
        ),
    )
    yield c
    c.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # No keep-alive: the edge here closes idle connections after 2 s.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


@pytest.fixture
async def bystander(
    hostile: LocalCluster, session: aiohttp.ClientSession
) -> AsyncIterator[Bystander]:
    found = await Bystander.join(
        session, hostile.ws_url(0), f"{hostile.edge_url(0)}/api", API_KEY, token("bystander")
    )
    yield found
    await found.leave()


def api(cluster: LocalCluster, method: str) -> str:
    return f"{cluster.edge_url(0)}/api/{method}"


async def _connect(session: aiohttp.ClientSession, url: str, tok: str) -> RawClient:
    ws = await session.ws_connect(url, autoclose=False)
    client = RawClient(ws)
    await client.send_raw(f'{{"id":1,"connect":{{"token":"{tok}"}}}}')
    return client


# Tokens.


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
        pytest.param(
            jwt.encode({"sub": "x", "exp": float("inf")}, TOKEN_SECRET, "HS256"), id="exp-infinite"
        ),
    ],
)
async def test_invalid_token_is_disconnected_with_3500(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander, bad_token: str
) -> None:
    client = await _connect(session, hostile.ws_url(0), bad_token)
    assert await client.wait_closed() == 3500
    assert client.close_reason == "invalid token"
    await bystander.check()


async def test_expired_token_gets_error_109(
    hostile: LocalCluster, session: aiohttp.ClientSession
) -> None:
    expired = jwt.encode({"sub": "x", "exp": int(time.time()) - 10}, TOKEN_SECRET, "HS256")
    client = await _connect(session, hostile.ws_url(0), expired)
    reply = await client.reply(1)
    assert reply["error"] == {"code": 109, "message": "token expired"}
    await client.ws.close()


# Client protocol frames.


@pytest.mark.parametrize(
    "frame_text",
    [
        pytest.param("{not json", id="malformed-json"),
        pytest.param("[1,2,3]", id="not-an-object"),
        pytest.param('{"id":5,"frobnicate":{}}', id="unknown-command"),
        pytest.param('{"id":"x","publish":{}}', id="id-not-integer"),
        pytest.param('{"id":-1,"publish":{}}', id="id-negative"),
        pytest.param('{"id":2,"subscribe":{"channel":"a"}}\n\n', id="empty-line"),
        pytest.param('{"id":2,"subscribe":"chat"}', id="params-not-object"),
        pytest.param('{"id":2,"subscribe":{"channel":5}}', id="channel-not-string"),
        pytest.param('{"id":2,"connect":{}}', id="second-connect"),
        pytest.param('{"id":2,"refresh":{"token":7}}', id="token-not-string"),
    ],
)
async def test_malformed_frame_gets_3501(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander, frame_text: str
) -> None:
    offender, reply = await connect_raw(session, hostile.ws_url(0), token("offender"))
    assert "connect" in reply
    await offender.send_raw(frame_text)
    assert await offender.wait_closed() == 3501
    await bystander.check()


@pytest.mark.parametrize(
    ("command", "params", "code"),
    [
        ("publish", {"channel": "c", "data": 1, "idempotency_key": 5}, 107),
        ("publish", {"channel": "c"}, 107),
        ("history", {"channel": "c", "limit": "x"}, 107),
        ("history", {"channel": "c", "since": []}, 107),
        ("subscribe", {"channel": "c", "offset": "x"}, 107),
        ("subscribe", {"channel": "c", "epoch": 1}, 107),
        ("rpc", {"method": []}, 108),
        ("presence", {"channel": "nope:c"}, 102),
    ],
)
async def test_wrong_types_get_an_error_reply_and_the_connection_stays(
    hostile: LocalCluster,
    session: aiohttp.ClientSession,
    bystander: Bystander,
    command: str,
    params: dict[str, object],
    code: int,
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    reply = await client.command(command, params)
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    assert "subscribe" in await client.command("subscribe", {"channel": channel()})
    await client.ws.close()
    await bystander.check()


async def test_command_before_connect_gets_3501(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    ws = await session.ws_connect(hostile.ws_url(0), autoclose=False)
    client = RawClient(ws)
    await client.send_raw('{"id":1,"subscribe":{"channel":"x"}}')
    assert await client.wait_closed() == 3501
    await bystander.check()


async def test_oversized_message_is_closed_with_1009(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    await client.send_raw('{"id":2,"publish":{"channel":"c","data":"' + "x" * 70000 + '"}}')
    assert await client.wait_closed() == 1009
    await bystander.check()


async def test_deeply_nested_data_is_refused_and_the_link_survives(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    deep = "[" * 300 + "]" * 300
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    ch = channel()
    assert "subscribe" in await client.command("subscribe", {"channel": ch})
    await client.send_raw(f'{{"id":9,"publish":{{"channel":"{ch}","data":{deep}}}}}')
    assert (await client.reply(9))["error"]["code"] == 107
    async with session.post(
        api(hostile, "publish"),
        data=f'{{"channel":"{ch}","data":{deep}}}',
        headers={"X-API-Key": API_KEY},
    ) as resp:
        assert (await resp.json())["error"]["code"] == 107
    assert "publish" in await client.command("publish", {"channel": ch, "data": {"ok": 1}})
    assert (await client.wait_pushes(1))[0]["pub"]["data"] == {"ok": 1}
    await client.ws.close()
    await bystander.check()


async def test_a_flood_of_subscribes_stops_at_the_limit(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    base = channel()
    flood = 3 * MAX_SUBSCRIPTIONS
    await client.send_raw(
        "\n".join(
            orjson.dumps({"id": 10 + i, "subscribe": {"channel": f"{base}-{i}"}}).decode()
            for i in range(flood)
        )
    )
    replies = [await client.reply(10 + i) for i in range(flood)]
    assert all("subscribe" in r for r in replies[:MAX_SUBSCRIPTIONS])
    assert {r["error"]["code"] for r in replies[MAX_SUBSCRIPTIONS:]} == {106}
    assert "publish" in await client.command("publish", {"channel": f"{base}-0", "data": 1})
    await client.ws.close()
    await bystander.check()


async def test_a_publish_storm_past_the_rate_limit_gets_111(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token("chatty"))
    ch = channel()
    assert "subscribe" in await client.command("subscribe", {"channel": ch})
    storm = 10 * PUBLISH_RATE
    await client.send_raw(
        "\n".join(
            orjson.dumps({"id": 100 + n, "publish": {"channel": ch, "data": {"n": n}}}).decode()
            for n in range(storm)
        )
    )
    replies = [await client.reply(100 + n) for n in range(storm)]
    accepted = [r for r in replies if "publish" in r]
    refused = [r["error"] for r in replies if "error" in r]
    # The bucket holds PUBLISH_RATE; a slow run may refill one or two more.
    assert PUBLISH_RATE <= len(accepted) < storm // 2
    assert all(e["code"] == 111 and e.get("temporary") for e in refused)
    pushes = await client.wait_pushes(len(accepted))
    assert [p["pub"]["offset"] for p in pushes] == list(range(1, len(accepted) + 1))
    await client.ws.close()
    await bystander.check()


# Channel names.


@pytest.mark.parametrize(
    "name", ["bad\u0000name", "line\nbreak", "cr\rlf", "esc\u001b[31m", "sep\u2028x", "x" * 256]
)
async def test_channel_names_with_control_characters_get_107(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander, name: str
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    for command in ("subscribe", "publish", "history"):
        reply = await client.command(command, {"channel": name, "data": 1})
        assert reply["error"] == {"code": 107, "message": "invalid channel name"}, command
    async with session.post(
        api(hostile, "publish"), json={"channel": name, "data": 1}, headers={"X-API-Key": API_KEY}
    ) as resp:
        assert await resp.json() == {"error": {"code": 107, "message": "invalid channel name"}}
    longpoll = f"{hostile.edge_url(0)}/connection/longpoll"
    async with session.post(longpoll, json={"token": token(), "channels": {name: {}}}) as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": {"code": 107, "message": "invalid channel name"}}
    sending = {"token": token(), "publish": [{"channel": name, "data": 1}]}
    async with session.post(longpoll, json=sending) as resp:
        answer = await resp.json()
        assert answer["published"] == [{"error": {"code": 107, "message": "invalid channel name"}}]
    await client.ws.close()
    await bystander.check()


async def test_path_like_channel_names_are_just_names(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    base = channel()
    names = [f"{base}/../x", f"../{base}", f"{base}%2f..", f"{base}\\x"]
    for name in names:
        assert "subscribe" in await client.command("subscribe", {"channel": name})
    for name in names:
        async with session.post(
            api(hostile, "publish"),
            json={"channel": name, "data": {"to": name}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            assert "result" in await resp.json()
    pushes = await client.wait_pushes(len(names))
    assert [(p["channel"], p["pub"]["data"]["to"]) for p in pushes] == [(n, n) for n in names]
    reply = await client.command("subscribe", {"channel": "slug:../etc"})
    assert reply["error"]["code"] == 102  # a namespace's channel_regex still applies
    await client.ws.close()
    await bystander.check()


async def test_channel_name_rules_and_unknown_namespaces(
    hostile: LocalCluster, session: aiohttp.ClientSession, bystander: Bystander
) -> None:
    client, _ = await connect_raw(session, hostile.ws_url(0), token())
    assert "subscribe" in await client.command("subscribe", {"channel": "slug:good-name-1"})
    for bad in ("slug:Bad_Name", "slug:" + "x" * 40, "nonexistent:chat", ":x"):
        reply = await client.command("subscribe", {"channel": bad})
        assert reply["error"]["code"] == 102, bad
    async with session.post(
        api(hostile, "publish"),
        json={"channel": "nonexistent:chat", "data": 1},
        headers={"X-API-Key": API_KEY},
    ) as resp:
        assert (await resp.json())["error"]["code"] == 102
    async with session.post(
        f"{hostile.edge_url(0)}/connection/longpoll",
        json={"token": token(), "channels": {"slug:Bad_Name": {}}},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == 102
    await client.ws.close()
    await bystander.check()


# Browsers on other origins.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/connection/websocket"),
        ("POST", "/connection/http_stream"),
        ("POST", "/connection/longpoll"),
        ("POST", "/emulation"),
        ("OPTIONS", "/connection/http_stream"),
    ],
)
async def test_a_page_on_a_foreign_origin_is_refused_with_403(
    hostile: LocalCluster,
    session: aiohttp.ClientSession,
    bystander: Bystander,
    method: str,
    path: str,
) -> None:
    headers = {"Origin": "https://evil.example"}
    if path.endswith("websocket"):
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        headers |= {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key}
        headers["Sec-WebSocket-Version"] = "13"
    async with session.request(
        method, hostile.edge_url(0) + path, data=b"{}", headers=headers
    ) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert await resp.json() == {
            "error": {"code": 103, "message": "origin 'https://evil.example' not allowed"}
        }
    await bystander.check()


# The server API.


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "API key required (X-API-Key header)"),
        ({"X-API-Key": "wrong"}, "API key not accepted"),
        ({"Authorization": "apikey wrong"}, "API key not accepted"),
        ({"X-API-Key": ""}, "API key required (X-API-Key header)"),
    ],
)
async def test_server_api_without_the_right_key_gets_401(
    hostile: LocalCluster,
    session: aiohttp.ClientSession,
    bystander: Bystander,
    headers: dict[str, str],
    message: str,
) -> None:
    async with session.post(
        api(hostile, "publish"), json={"channel": "c", "data": {}}, headers=headers
    ) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": {"code": 101, "message": message}}
    await bystander.check()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/publish", b"{oops", 400, 107),
        ("POST", "/api/publish", b"[]", 400, 107),
        ("POST", "/api/publish", b'{"data":{}}', 200, 107),
        ("POST", "/api/nope", b"{}", 404, 104),
        ("POST", "/api/batch", orjson.dumps({"commands": [{"info": {}}] * 1001}), 200, 106),
        ("GET", "/api/publish", b"", 405, 104),
        ("POST", "/api/a/b", b"{}", 404, 104),
        ("POST", "/api/publish", b'{"channel":"c","data":"' + b"x" * (1 << 20) + b'"}', 413, 107),
        ("POST", "/emulation", b"x" * 70000, 413, 107),
        ("POST", "/connection/http_stream", b"x" * 70000, 413, 107),
        ("POST", "/emulation", b'{"session":1}', 400, 107),
        ("POST", "/emulation", b'{"session":"s","node":"elsewhere","data":"{}"}', 404, 104),
        ("POST", "/connection/uni_sse", b'{"subs":{"c":{"recover":true,"offset":"x"}}}', 400, 107),
        (
            "POST",
            "/connection/longpoll",
            orjson.dumps({"token": token(), "channels": {"c": {}}, "timeout": "nan"}),
            400,
            107,
        ),
    ],
)
async def test_bad_http_requests_get_json_naming_the_problem(
    hostile: LocalCluster,
    session: aiohttp.ClientSession,
    bystander: Bystander,
    method: str,
    path: str,
    body: bytes,
    status: int,
    code: int,
) -> None:
    async with session.request(
        method, hostile.edge_url(0) + path, data=body, headers={"X-API-Key": API_KEY}
    ) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
        assert error["code"] == code and error["message"], error
    await bystander.check()


# Slow and silent HTTP clients.


async def test_slow_headers_are_cut_after_the_header_timeout(
    hostile: LocalCluster, bystander: Bystander
) -> None:
    reader, writer = await open_tcp(hostile.spec.edge_port(0))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for n in range(100):  # one header line every 0.2 s: never a complete head
            writer.write(b"X-Slow-%d: y\r\n" % n)
            await writer.drain()
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(trickle())
    try:
        assert await hung_up(reader) == b""  # closed, and nothing answered
    finally:
        dripping.cancel()
        writer.close()
    await bystander.check()


async def test_a_connection_that_sends_nothing_is_closed(
    hostile: LocalCluster, bystander: Bystander
) -> None:
    reader, writer = await open_tcp(hostile.spec.edge_port(0))
    assert await hung_up(reader) == b""
    writer.close()
    await bystander.check()


async def test_a_slow_body_gets_408(hostile: LocalCluster, bystander: Bystander) -> None:
    reader, writer = await open_tcp(hostile.spec.edge_port(0))
    body = b'{"channel":"c","data":{"slow":true}}'
    writer.write(
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (API_KEY.encode(), len(body))
    )

    async def trickle() -> None:
        for byte in body[:-1]:  # never the last byte
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(trickle())
    try:
        status, answer = http_answer(await hung_up(reader))
    finally:
        dripping.cancel()
        writer.close()
    assert status == 408
    assert answer == {"error": {"code": 107, "message": "request body not received within 1 s"}}
    await bystander.check()


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n",
            (400, 431),
            id="header-line-too-long",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(200))
            + b"\r\n",
            (400, 431),
            id="too-many-headers",
        ),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", (400,), id="not-http"),
        pytest.param(
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n" % API_KEY.encode(),
            (400,),
            id="malformed-chunked-body",
        ),
        pytest.param(
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            (401,),
            id="api-key-not-utf8",
        ),
    ],
)
async def test_malformed_http_gets_a_4xx_and_a_close(
    hostile: LocalCluster, bystander: Bystander, request_bytes: bytes, statuses: tuple[int, ...]
) -> None:
    reader, writer = await open_tcp(hostile.spec.edge_port(0))
    writer.write(request_bytes)
    status, _ = http_answer(await hung_up(reader))
    writer.close()
    assert status in statuses
    await bystander.check()


# WebSocket protocol violations.


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(b'{"id":1,"connect":{}}', masked=False), 1002, id="unmasked"),
        pytest.param(frame(b"x", opcode=0x3), 1002, id="reserved-opcode"),
        pytest.param(frame(b"x", opcode=0xB), 1002, id="reserved-control-opcode"),
        pytest.param(frame(b"\xff\xfe{}", opcode=0x1), 1007, id="bad-utf8-text"),
        pytest.param(frame(b"ping", opcode=0x9, fin=False), 1002, id="fragmented-control"),
        pytest.param(frame(b"p" * 126, opcode=0x9), 1002, id="oversized-control"),
        pytest.param(frame(b"x", rsv=0x4), 1002, id="reserved-bits"),
        pytest.param(frame(b"x", opcode=0x0), 1002, id="continuation-first"),
        pytest.param(frame(b"{", fin=False) + frame(b"}", opcode=0x1), 1002, id="interleaved"),
        pytest.param(frame(b"\x03\xe7", opcode=0x8), 1002, id="close-code-999"),
        pytest.param(frame(b"x", declared=1 << 40)[:14], 1009, id="declared-one-terabyte"),
    ],
)
async def test_websocket_protocol_violations_are_closed_with_their_code(
    hostile: LocalCluster, bystander: Bystander, data: bytes, code: int
) -> None:
    reader, writer = await open_websocket(hostile.spec.edge_port(0))
    writer.write(data)
    assert await close_code(reader) == code
    writer.close()
    await bystander.check()


async def test_unmasked_frames_are_refused_after_a_good_start(
    hostile: LocalCluster, bystander: Bystander
) -> None:
    reader, writer = await open_websocket(hostile.spec.edge_port(0))
    connect = orjson.dumps({"id": 1, "connect": {"token": token()}})
    writer.write(frame(connect))
    writer.write(frame(b'{"id":2,"subscribe":{"channel":"c"}}', masked=False))
    assert await close_code(reader) == 1002
    writer.close()
    await bystander.check()
