"""A raw Centrifugo-protocol WebSocket client for tests that need exact frames."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson


class RawClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.pushes: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.answer_pings = True
        self.pings = 0

    async def send_raw(self, data: str) -> None:
        await self.ws.send_str(data)

    async def command(
        self, method: str, params: dict[str, Any], timeout: float = 10
    ) -> dict[str, Any]:
        cmd_id = next(self._ids)
        await self.ws.send_str(orjson.dumps({"id": cmd_id, method: params}).decode())
        return await self.reply(cmd_id, timeout)

    async def reply(self, cmd_id: int, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while cmd_id not in self.replies:
                if not await self._read_one():
                    raise ConnectionError(f"closed {self.close_code} {self.close_reason}")
        return self.replies.pop(cmd_id)

    async def wait_closed(self, timeout: float = 10) -> int | None:
        async with asyncio.timeout(timeout):
            while await self._read_one():
                pass
        return self.close_code

    async def wait_pushes(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.pushes) < count:
                if not await self._read_one():
                    raise ConnectionError(f"closed {self.close_code} {self.close_reason}")
        return self.pushes

    async def _read_one(self) -> bool:
        msg = await self.ws.receive()
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ):
            self.close_code = self.ws.close_code
            self.close_reason = str(msg.extra or "")
            return False
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return True
        for line in msg.data.split("\n"):
            obj = orjson.loads(line)
            if "id" in obj:
                self.replies[obj["id"]] = obj
            elif "push" in obj:
                self.pushes.append(obj["push"])
            else:
                self.pings += 1
                if self.answer_pings:
                    await self.ws.send_str("{}")
        return True


async def connect_raw(
    session: aiohttp.ClientSession, url: str, token: str
) -> tuple[RawClient, dict[str, Any]]:
    ws = await session.ws_connect(url, autoclose=False)
    client = RawClient(ws)
    reply = await client.command("connect", {"token": token})
    return client, reply
