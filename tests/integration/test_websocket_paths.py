"""The edge's two WebSocket paths: its own (an upgrade on a fresh connection, compressed or
not) and aiohttp's (an upgrade after HTTP requests on a kept-alive connection). Both must serve
the same protocol."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, counted
from tests.support.hostile import frame, read_frame, upgrade_request
from tests.support.jsclient import JsClient
from tests.support.wsclient import RawClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def compressing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("wspaths"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml="websocket_compression = true",
    )
    yield c
    c.stop()


async def publish(session: aiohttp.ClientSession, base: str, ch: str, data: object) -> None:
    body = {"channel": ch, "data": data}
    async with session.post(f"{base}/api/publish", json=body, headers={"X-API-Key": API_KEY}) as r:
        assert r.status == 200, await r.text()


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
async def test_the_own_path_connects_subscribes_and_delivers_compressed_or_not(
    compressing: LocalCluster, compress: int
) -> None:
    ch = channel("paths")
    series = 'skyrelay_edge_websocket_upgrades_total{path="own"}'
    async with aiohttp.ClientSession() as session:
        before = await counted(compressing.edge_url(0), series)
        ws = await session.ws_connect(compressing.ws_url(0), compress=compress, autoclose=False)
        assert await counted(compressing.edge_url(0), series) == before + 1
        # Deflate only where asked for and switched on, with the client window the edge sets.
        assert ws.compress == (10 if compress else 0)
        client = RawClient(ws)
        assert "error" not in await client.command("connect", {"token": token()})
        reply = await client.command("subscribe", {"channel": ch})
        assert "error" not in reply, reply
        await publish(session, compressing.edge_url(0), ch, {"n": 1})
        pushes = await client.wait_pushes(1)
        assert pushes[0]["pub"]["data"] == {"n": 1}
        await ws.close()


@pytest.mark.parametrize("after_http", [False, True], ids=["fresh", "after-keep-alive-request"])
async def test_a_command_sent_with_the_upgrade_and_one_sent_byte_by_byte_are_answered(
    compressing: LocalCluster, after_http: bool
) -> None:
    port = compressing.spec.edge_port(0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if after_http:
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        connect = json.dumps({"id": 1, "connect": {"token": token()}}).encode()
        writer.write(upgrade_request(port) + frame(connect))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # A fresh connection is the edge's own path; after HTTP requests, aiohttp's.
        assert (b"aiohttp" in head) is after_http, head
        opcode, payload = await read_frame(reader)
        assert opcode == 0x1 and json.loads(payload)["id"] == 1
        for byte in frame(b'{"id":2,"subscribe":{"channel":"' + channel("b").encode() + b'"}}'):
            writer.write(bytes([byte]))
            await writer.drain()
        opcode, payload = await read_frame(reader)
        assert json.loads(payload) == {"id": 2, "subscribe": {}}
        writer.write(frame(b"hi", opcode=0x9))
        assert await read_frame(reader) == (0xA, b"hi")
        writer.write(frame(b"\x03\xe8", opcode=0x8))
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and payload[:2] == b"\x03\xe8"
        assert await reader.read() == b""  # and the server hangs up
    finally:
        writer.close()


async def test_commands_sent_before_a_close_are_answered_before_its_echo(
    compressing: LocalCluster,
) -> None:
    port = compressing.spec.edge_port(0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        connect = json.dumps({"id": 1, "connect": {"token": token()}}).encode()
        writer.write(upgrade_request(port) + frame(connect) + frame(b"\x03\xe8", opcode=0x8))
        await reader.readuntil(b"\r\n\r\n")
        opcode, payload = await read_frame(reader)
        assert opcode == 0x1 and json.loads(payload)["id"] == 1, payload
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and payload[:2] == b"\x03\xe8"
    finally:
        writer.close()


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "deflate"])
@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_a_message_over_the_limit_gets_1009_before_the_connection_ends(
    compressing: LocalCluster, compress: int, protobuf: bool
) -> None:
    """Compressed, 70,000 bytes are a few hundred on the wire: the limit counts them inflated."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            compressing.ws_url(0),
            compress=compress,
            autoclose=False,
            protocols=("centrifuge-protobuf",) if protobuf else (),
        )
        assert bool(ws.compress) == bool(compress)
        await ws.send_bytes(b"\x00" * 70_000) if protobuf else await ws.send_str("x" * 70_000)
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert msg.data == 1009
        await ws.close()


@pytest.mark.parametrize("after_http", [False, True], ids=["own-path", "aiohttp-after-keep-alive"])
async def test_a_huge_message_still_gets_its_1009_and_no_reset(
    compressing: LocalCluster, after_http: bool
) -> None:
    """A client in the middle of sending 10 MB reads the close frame: the edge reads and drops
    the rest instead of closing on unread data (which makes the kernel send a reset)."""
    port = compressing.spec.edge_port(0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if after_http:
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.write(upgrade_request(port))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101") and (b"aiohttp" in head) is after_http, head
        writer.write(frame(b"x" * 10_000_000))
        await writer.drain()
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and int.from_bytes(payload[:2]) == 1009
    finally:
        writer.close()


async def test_pushes_are_compressed_once_for_every_subscriber(compressing: LocalCluster) -> None:
    """Raw sockets that offer deflate: large pushes arrive with RSV1 set, the same bytes on
    every connection (one compression per process), and inflate to the publication."""
    port = compressing.spec.edge_port(0)
    ch = channel("deflate")
    frames = []
    writers = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        offer = upgrade_request(port).replace(
            b"\r\n\r\n",
            b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        )
        writer.write(offer)
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"permessage-deflate; server_no_context_takeover" in head, head
        assert b"client_max_window_bits=10" in head, head
        for n, command in enumerate(
            ({"connect": {"token": token()}}, {"subscribe": {"channel": ch}}), start=1
        ):
            writer.write(frame(json.dumps({"id": n, **command}).encode()))
            await read_frame(reader)
        frames.append(reader)
    data = {"text": "a dashboard row " * 100}
    async with aiohttp.ClientSession() as session:
        await publish(session, compressing.edge_url(0), ch, data)
    got = []
    for reader in frames:
        head = await reader.readexactly(2)
        assert head[0] == 0xC1  # final, compressed, text
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        got.append(await reader.readexactly(size))
    assert got[0] == got[1] == got[2]
    assert len(got[0]) < len(json.dumps(data)) / 5
    push = json.loads(zlib.decompressobj(-15).decompress(got[0] + b"\x00\x00\xff\xff"))
    assert push["push"]["pub"]["data"] == data
    for writer in writers:
        writer.close()


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_centrifuge_js_under_node_with_deflate(
    compressing: LocalCluster, protobuf: bool
) -> None:
    """Node's ws offers permessage-deflate: centrifuge-js works through it both ways."""
    ch = channel("jsdeflate")
    js = await JsClient.start(compressing.ws_url(0), token("jsz"), protobuf=protobuf)
    try:
        await js.call("connect")
        await js.wait(lambda e: e["ev"] == "connected")
        await js.call("subscribe", channel=ch)
        await js.wait(lambda e: e["ev"] == "subscribed")
        big = {"rows": ["a dashboard row"] * 50}
        await js.call("publish", channel=ch, data=big)
        async with aiohttp.ClientSession() as session:
            await publish(session, compressing.edge_url(0), ch, {"n": 2})
        await js.wait(lambda e: e["ev"] == "pub", count=2)
        assert js.pubs(ch) == [(1, big), (2, {"n": 2})]
    finally:
        await js.close()
