"""The edge's two WebSocket paths: its own (a plain upgrade on a fresh connection) and
aiohttp's (compression negotiated, or an upgrade after HTTP requests on a kept-alive
connection). Both must serve the same protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, metric
from tests.support.hostile import frame, read_frame, upgrade_request
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


async def upgrades(base: str, series: str) -> float:
    """The count so far; a labelled series appears with its first upgrade. A session of its
    own: an upgrade on a connection kept alive from this request would go to aiohttp."""
    async with aiohttp.ClientSession() as session:
        try:
            return await metric(session, base, series)
        except AssertionError:
            return 0.0


@pytest.mark.parametrize("compress", [0, 15], ids=["own-path", "deflate-via-aiohttp"])
async def test_both_paths_connect_subscribe_and_deliver(
    compressing: LocalCluster, compress: int
) -> None:
    ch = channel("paths")
    path = "aiohttp" if compress else "own"
    series = f'skyrelay_edge_websocket_upgrades_total{{path="{path}"}}'
    async with aiohttp.ClientSession() as session:
        before = await upgrades(compressing.edge_url(0), series)
        ws = await session.ws_connect(compressing.ws_url(0), compress=compress, autoclose=False)
        assert await upgrades(compressing.edge_url(0), series) == before + 1
        assert ws.compress == compress  # deflate only where asked for and switched on
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


@pytest.mark.parametrize("compress", [0, 15], ids=["own-path", "deflate-via-aiohttp"])
@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_a_message_over_the_limit_gets_1009_before_the_connection_ends(
    compressing: LocalCluster, compress: int, protobuf: bool
) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            compressing.ws_url(0),
            compress=compress,
            autoclose=False,
            protocols=("centrifuge-protobuf",) if protobuf else (),
        )
        assert ws.compress == compress
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
