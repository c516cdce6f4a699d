"""Tools for the bad-input catalogue: raw sockets that speak broken HTTP and WebSocket, and a
bystander client that must keep receiving publications in order whatever the others do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from typing import Any

import aiohttp
import orjson

from tests.support.helpers import channel
from tests.support.wsclient import RawClient, connect_raw


def frame(
    payload: bytes,
    *,
    opcode: int = 0x1,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    declared: int | None = None,
) -> bytes:
    """One client-to-server WebSocket frame, as broken as asked."""
    size = len(payload) if declared is None else declared
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, mask_bit | size])
    elif size < 65536:
        head = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_tcp(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def upgrade_request(port: int) -> bytes:
    """A plain WebSocket upgrade of /connection/websocket with a fresh key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw socket past the WebSocket handshake: every byte after it is ours to choose."""
    reader, writer = await open_tcp(port)
    writer.write(upgrade_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (servers do not mask): its opcode and payload."""
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(size)


async def close_code(reader: asyncio.StreamReader, timeout: float = 10) -> int | None:
    """Reads server frames until a close frame; its code, or None if the socket just ended."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                opcode, body = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return None
            if opcode == 0x8:
                return int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005


async def hung_up(reader: asyncio.StreamReader, timeout: float = 15) -> bytes:
    """Everything the server sends until it closes the connection (fails past ``timeout``)."""
    got = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            got += chunk
    return got


def http_answer(raw: bytes) -> tuple[int, dict[str, Any] | None]:
    """Status and JSON body (when it is JSON) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"application/json" not in head.lower():
        return status, None
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, orjson.loads(body)


class Bystander:
    """A well-behaved client subscribed to its own channel. ``check`` publishes through the
    server API and waits until every publication so far has arrived, in order."""

    def __init__(self, client: RawClient, api: str, api_key: str) -> None:
        self.client = client
        self.channel = channel("bystander-")
        self._api = api
        self._key = api_key
        self.sent = 0
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def join(
        cls, session: aiohttp.ClientSession, ws_url: str, api: str, api_key: str, token: str
    ) -> Bystander:
        client, reply = await connect_raw(session, ws_url, token)
        assert "connect" in reply, reply
        self = cls(client, api, api_key)
        assert "subscribe" in await client.command("subscribe", {"channel": self.channel})
        # Keep reading (and answering pings) while the test does its worst elsewhere.
        self._reader = asyncio.create_task(self._read())
        await self.check()
        return self

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await self.client.wait_pushes(1 << 30, timeout=3600)

    async def check(self) -> None:
        self.sent += 1
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.post(
                f"{self._api}/publish",
                json={"channel": self.channel, "data": {"n": self.sent}},
                headers={"X-API-Key": self._key},
            ) as resp,
        ):
            assert "result" in await resp.json(), "the server API stopped serving"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(self.client.pushes) < self.sent:
            assert self.client.close_code is None, f"bystander closed {self.client.close_code}"
            assert loop.time() < deadline, "the bystander stopped receiving"
            await asyncio.sleep(0.01)
        pubs = [p["pub"] for p in self.client.pushes]
        assert [p["data"]["n"] for p in pubs] == list(range(1, self.sent + 1))
        assert [p["offset"] for p in pubs] == list(range(1, self.sent + 1))

    async def leave(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.client.ws.close()
