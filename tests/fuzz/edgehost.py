"""An edge and one origin shard, the real aiohttp applications, served in-process on loopback
ports from a thread of their own; fuzz tests send requests from the test's thread.

The thread keeps one event loop for the whole module, so examples cost a request each, not a
server start-up. Every log record with a traceback is kept: no input may cause one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from skyrelay.config import ClusterConfig, parse_config
from skyrelay.edge.app import build_app as build_edge
from skyrelay.edge.node import NODE_KEY
from skyrelay.edge.ws.front import front_factory
from skyrelay.origin.app import build_app as build_origin
from skyrelay.tokens import mint_token

T = TypeVar("T")

TOKEN_SECRET = "fuzz-token-secret-" + "0123456789abcdef" * 4
API_KEY = "fuzz-api-key"
START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fuzz_config(edge_port: int, origin_port: int) -> ClusterConfig:
    return parse_config(
        {
            "replication": 1,
            "shards": [{"id": "o0", "url": f"http://127.0.0.1:{origin_port}"}],
            "edges": [{"id": "e0", "port": edge_port}],
            # Short waits, so that no example holds a request long.
            "edge": {
                "longpoll_timeout": 0.2,
                "upstream_timeout": 2.0,
                "client_publish_rate": 0,
                "max_subscriptions_per_connection": 8,
            },
            "origin": {"survey_timeout": 0.2},
            "namespaces": {
                "default": {"presence": True, "join_leave": True, "allow_publish": "client"},
                "nohist": {"history_size": 0},
                "slug": {"channel_regex": "[a-z0-9-]{1,16}"},
            },
            "token_secret": TOKEN_SECRET,
            "api_key": API_KEY,
        },
        env={},
    )


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class EdgeHost:
    def __init__(self) -> None:
        self.edge_port, self.origin_port = _free_port(), _free_port()
        self.config = fuzz_config(self.edge_port, self.origin_port)
        self.base = f"http://127.0.0.1:{self.edge_port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.session: aiohttp.ClientSession | None = None
        self.tracebacks = _Tracebacks()

    def start(self) -> EdgeHost:
        logging.getLogger().addHandler(self.tracebacks)
        self._thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        origin = web.AppRunner(build_origin(self.config, "o0"), access_log=None)
        await origin.setup()
        await web.TCPSite(origin, "127.0.0.1", self.origin_port).start()
        edge_app = build_edge(self.config, "e0")
        edge = web.AppRunner(edge_app, access_log=None)
        await edge.setup()
        assert edge.server is not None
        # As the edge process serves: its own WebSocket path first, aiohttp for the rest.
        front = front_factory(edge_app[NODE_KEY], self.config.edge.http_header_timeout)
        self._servers.append(
            await self.loop.create_server(front(edge.server), "127.0.0.1", self.edge_port)
        )
        self._runners += [origin, edge]
        self.session = aiohttp.ClientSession()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            async with self.session.get(f"{self.base}/ready") as resp:
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the fuzz edge never got ready")
            await asyncio.sleep(0.02)

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the host's loop and wait for its result."""

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(CALL_TIMEOUT)

    def http(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        """One request; returns status, content type and body."""

        async def go() -> tuple[int, str, bytes]:
            assert self.session is not None
            async with self.session.request(
                method, self.base + path, data=body, headers=headers or {}
            ) as resp:
                return resp.status, resp.content_type, await resp.read()

        return self.call(go)

    def stream(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        enough: Callable[[bytes], bool] = lambda _: False,
        wait: float = 5.0,
    ) -> tuple[int, str, bytes]:
        """A streaming request: reads until the stream ends, ``enough`` holds, or ``wait``
        seconds pass (a stream that stays open is fine), then hangs up."""

        async def go() -> tuple[int, str, bytes]:
            assert self.session is not None
            got = b""
            async with self.session.request(
                method, self.base + path, data=body, params=params, headers=headers
            ) as resp:
                try:
                    async with asyncio.timeout(wait):
                        async for chunk in resp.content.iter_any():
                            got += chunk
                            if enough(got):
                                break
                except TimeoutError:
                    pass
                return resp.status, resp.content_type, got

        return self.call(go)

    @staticmethod
    def token_for(user: str, **extra: Any) -> str:
        """A connection token good for a day."""
        return mint_token(TOKEN_SECRET, user, now=time.time(), ttl=86400, extra=extra or None)

    def stop(self) -> None:
        async def stop() -> None:
            if self.session is not None:
                await self.session.close()
            for server in self._servers:
                server.close()
            for runner in reversed(self._runners):
                await runner.cleanup()

        try:
            self.call(stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            logging.getLogger().removeHandler(self.tracebacks)

    def take_tracebacks(self) -> list[str]:
        found = [f"{r.name}: {r.getMessage()}" for r in self.tracebacks.records]
        self.tracebacks.records.clear()
        return found
