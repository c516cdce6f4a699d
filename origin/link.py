"""The origin side of the edge link: an aiohttp WebSocket handler adapting ``Shard``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from origin.shard import Outcome, Shard
from skyrelay import edgelink
from skyrelay.tasks import spawn

log = logging.getLogger("skyrelay.origin.link")


class PeerWriter:
    """Batches everything bound for one edge into one frame per loop turn.

    One writer task per edge link (not per client or message). An edge that does not read
    past ``limit`` bytes is cut; it reconnects and resynchronises from its last offsets.
    """

    __slots__ = ("_queue", "_size", "_task", "_wake", "_ws", "limit", "name")

    def __init__(self, ws: web.WebSocketResponse, limit: int, name: str) -> None:
        self._ws = ws
        self.limit = limit
        self.name = name
        self._queue: list[bytes] = []
        self._size = 0
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def send(self, message: bytes) -> None:
        if self._ws.closed:
            return
        self._queue.append(message)
        self._size += len(message)
        if self._size > self.limit:
            log.warning("edge link %s is not reading; closing it", self.name)
            self._queue.clear()
            spawn(self._ws.close(code=1013, message=b"too slow"))
            return
        self._wake.set()

    async def _run(self) -> None:
        ws = self._ws
        while not ws.closed:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue, self._size = self._queue, [], 0
            if batch:
                try:
                    await ws.send_bytes(edgelink.join_frame(batch))
                except (ConnectionError, RuntimeError):
                    return

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _handle(shard: Shard, peer: PeerWriter, message: dict[str, Any], now: float) -> Outcome:
    """Run one request; a bug in one request answers 100 instead of dropping the link."""
    try:
        return shard.handle(peer, message, now)
    except edgelink.LinkProtocolError:
        raise
    except Exception:
        log.exception("request %s failed", message.get("op"))
        req_id = message.get("id")
        return Outcome(edgelink.error(req_id if isinstance(req_id, int) else 0, 100, "internal"))


SHARD_KEY = web.AppKey("shard", Shard)
PEERS_KEY = web.AppKey("peers", set[PeerWriter])


async def link_handler(request: web.Request) -> web.StreamResponse:
    shard = request.app[SHARD_KEY]
    settings = shard.config.origin
    ws = web.WebSocketResponse(
        max_msg_size=settings.link_max_frame, compress=False, autoping=True, heartbeat=None
    )
    await ws.prepare(request)
    name = request.query.get("edge", request.remote or "?")
    peer = PeerWriter(ws, settings.link_write_limit, name)
    peers = request.app[PEERS_KEY]
    peers.add(peer)
    log.info("edge link up: %s", name)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:
                continue
            try:
                messages = edgelink.decode_frame(msg.data)
                now = time.time()
                for message in messages:
                    out = _handle(shard, peer, message, now)
                    peer.send(out.response)
                    if out.push is not None:
                        for other in out.push_to:
                            assert isinstance(other, PeerWriter)
                            other.send(out.push)
            except edgelink.LinkProtocolError as exc:
                log.warning("edge link %s sent a bad frame: %s", name, exc)
                await ws.close(code=1002, message=b"bad frame")
                break
    finally:
        peers.discard(peer)
        shard.drop_peer(peer)
        await peer.close()
        log.info("edge link down: %s", name)
    return ws
