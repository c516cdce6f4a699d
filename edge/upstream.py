"""The edge side of the edge link: one persistent, multiplexed WebSocket to one shard."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import aiohttp

from edge.codes import ErrorCode, ReplyError
from skyrelay import edgelink
from skyrelay.config import EdgeSettings, ShardConfig

log = logging.getLogger("skyrelay.edge.upstream")

# Seconds between WebSocket pings on an idle link; a missed pong counts as a link failure.
LINK_HEARTBEAT = 5.0


class LinkState(Enum):
    CONNECTING = "connecting"
    UP = "up"
    CLOSED = "closed"


def unavailable(shard_id: str, why: str) -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, f"shard {shard_id} {why}", temporary=True)


class ShardLink:
    """Requests are pipelined and batched into one frame per loop turn; pushes go to
    ``on_push`` in the order the shard sent them. The link reconnects by itself and calls
    ``on_up`` / ``on_down`` so that the hub can resynchronise its channels."""

    def __init__(
        self,
        shard: ShardConfig,
        edge_id: str,
        session: aiohttp.ClientSession,
        settings: EdgeSettings,
        on_push: Callable[[dict[str, Any]], None],
        on_up: Callable[[ShardLink], None],
        on_down: Callable[[ShardLink], None],
    ) -> None:
        self.shard = shard
        self.edge_id = edge_id
        self.state = LinkState.CONNECTING
        self.connects = 0
        self._session = session
        self._settings = settings
        self._on_push = on_push
        self._on_up = on_up
        self._on_down = on_down
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._queue: list[bytes] = []
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.shard.id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.shard.id}")

    async def close(self) -> None:
        self.state = LinkState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def request(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its result; failures raise a temporary ReplyError."""
        timeout = self._settings.upstream_timeout
        if not self._up.is_set():
            try:
                await asyncio.wait_for(self._up.wait(), timeout)
            except TimeoutError:
                raise unavailable(self.id, "is unreachable") from None
        req_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        self._enqueue({"id": req_id, "op": op, **params})
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise unavailable(self.id, "did not answer in time") from None
        finally:
            self._pending.pop(req_id, None)

    def send(self, op: str, params: dict[str, Any]) -> None:
        """Fire and forget (unsubscribe): the response is ignored, the order is kept."""
        if self._up.is_set():
            self._enqueue({"id": next(self._ids), "op": op, **params})

    def _enqueue(self, message: dict[str, Any]) -> None:
        self._queue.append(edgelink.encode_message(message))
        self._wake.set()

    async def _run(self) -> None:
        base = self._settings.link_reconnect_delay
        delay = base
        url = f"{self.shard.url.rstrip('/')}{edgelink.LINK_PATH}"
        while self.state is not LinkState.CLOSED:
            try:
                ws = await self._session.ws_connect(
                    url,
                    params={"edge": self.edge_id},
                    max_msg_size=self._settings.link_max_frame,
                    heartbeat=LINK_HEARTBEAT,
                    compress=0,
                    autoping=True,
                )
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, base * 10)
                continue
            delay = base
            await self._serve(ws)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.state = LinkState.UP
        self.connects += 1
        self._queue.clear()
        self._up.set()
        log.info("edge link to shard %s up", self.id)
        writer = asyncio.create_task(self._write(ws))
        try:
            self._on_up(self)
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._dispatch(msg.data)
        except edgelink.LinkProtocolError as exc:
            log.error("shard %s sent a bad frame: %s", self.id, exc)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await ws.close()
            self._up.clear()
            if self.state is LinkState.UP:
                self.state = LinkState.CONNECTING
            self._fail_pending()
            log.warning("edge link to shard %s down", self.id)
            self._on_down(self)

    def _dispatch(self, frame: bytes) -> None:
        for message in edgelink.decode_frame(frame):
            push = message.get("push")
            if push is not None:
                self._on_push(push)
                continue
            future = self._pending.get(message.get("id", 0))
            if future is None or future.done():
                continue
            error = message.get("error")
            if error is not None:
                future.set_exception(
                    ReplyError(
                        int(error.get("code", ErrorCode.INTERNAL)),
                        str(error.get("message", "")),
                        bool(error.get("temporary", False)),
                    )
                )
            else:
                future.set_result(message.get("result") or {})

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(unavailable(self.id, "link was lost"))

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await ws.send_bytes(edgelink.join_frame(batch))
