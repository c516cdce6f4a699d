"""The real centrifuge-js client under Node.js, driven line by line (see tests/js/driver.mjs)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parents[1] / "js"


def require_node() -> str:
    """Node.js with the pinned packages installed; skip locally, fail in CI."""
    node = shutil.which("node")
    ready = node is not None and (JS_DIR / "node_modules" / "centrifuge").is_dir()
    if not ready:
        message = "needs Node.js and `npm ci` in tests/js (make test does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return node


class JsClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls,
        endpoints: Any,
        token: str,
        emulation: str = "",
        *,
        protobuf: bool = False,
        refresh_tokens: bool = False,
    ) -> JsClient:
        config = {
            "endpoints": endpoints,
            "token": token,
            "emulationEndpoint": emulation or "/emulation",
            "protobuf": protobuf,
            "refreshTokens": refresh_tokens,
        }
        proc = await asyncio.create_subprocess_exec(
            require_node(),
            str(JS_DIR / "driver.mjs"),
            json.dumps(config),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(proc)
        await client.wait(lambda e: e["ev"] == "ready")
        return client

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))
            self._changed.set()

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0, count: int = 1
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.events if predicate(e)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def call(self, cmd: str, **params: Any) -> dict[str, Any]:
        cmd_id = next(self._ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": cmd_id, "cmd": cmd, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        (event,) = await self.wait(lambda e: e["ev"] == "result" and e["id"] == cmd_id)
        if "error" in event:
            raise AssertionError(f"{cmd} failed: {event['error']}")
        result: dict[str, Any] = event["result"]
        return result

    def pubs(self, channel: str) -> list[tuple[int, Any]]:
        return [
            (e["offset"], e["data"])
            for e in self.events
            if e["ev"] == "pub" and e["channel"] == channel
        ]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
