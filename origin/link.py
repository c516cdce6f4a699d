"""The origin side of the edge link: an aiohttp WebSocket handler adapting ``Shard``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from skyrelay.link import wire
from skyrelay.origin.link_guard import LINK_GUARD_KEY
from skyrelay.origin.shard import Shard
from skyrelay.origin.storage.store import Batch, ShardStore
from skyrelay.origin.survey import Surveyor
from skyrelay.protocol.codes import ErrorCode
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.origin.link")


class PeerWriter:
    """Batches everything bound for one edge into one frame per loop turn.

    One writer task per edge link (not per client or message). An edge that does not read
    past ``limit`` bytes is cut; it reconnects and resynchronises from its last offsets.
    """

    __slots__ = (
        "_held",
        "_queue",
        "_size",
        "_store",
        "_task",
        "_wake",
        "_ws",
        "answers_surveys",
        "limit",
        "name",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        limit: int,
        name: str,
        answers_surveys: bool = False,
        store: ShardStore | None = None,
    ) -> None:
        self._ws = ws
        self.limit = limit
        self.name = name
        # Edge processes answer surveys; links from other shards do not.
        self.answers_surveys = answers_surveys
        self._queue: list[bytes] = []
        self._size = 0
        # Answers waiting for a storage write (marker, request id, answer), and everything
        # after them: the link keeps its order.
        self._held: deque[tuple[int, int, bytes]] = deque()
        self._store = store
        if store is not None:
            store.listeners.append(self._released)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def send(self, message: bytes, after: int = 0, req_id: int = 0) -> None:
        """Queue ``message``; with ``after``, only once that storage write resolved (and as
        a temporary error naming ``req_id`` if it failed)."""
        if self._ws.closed:
            return
        store = self._store
        if store is not None and (self._held or after > store.resolved):
            self._held.append((after, req_id, message))
            return
        self._queue.append(message)
        self._size += len(message)
        if self._size > self.limit:
            log.warning("edge link %s is not reading; closing it", self.name)
            self._queue.clear()
            spawn(self._ws.close(code=1013, message=b"too slow"))
            return
        self._wake.set()

    def _released(self, _: Batch) -> None:
        store = self._store
        assert store is not None
        released = False
        while self._held and self._held[0][0] <= store.resolved:
            marker, req_id, message = self._held.popleft()
            if marker and store.failed(marker):
                message = wire.error(req_id, ErrorCode.INTERNAL, "storage write failed", True)
            self._queue.append(message)
            self._size += len(message)
            released = True
        if released:
            self._wake.set()

    async def _run(self) -> None:
        ws = self._ws
        while not ws.closed:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue, self._size = self._queue, [], 0
            if batch:
                try:
                    await ws.send_bytes(wire.join_frame(batch))
                except (ConnectionError, RuntimeError):
                    return

    async def close(self) -> None:
        if self._store is not None:
            self._store.listeners.remove(self._released)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _respond(shard: Shard, peer: PeerWriter, message: dict[str, Any]) -> None:
    """Run one request that may wait (leadership, replication); answer when done."""
    try:
        response = await shard.handle(peer, message)
    except wire.LinkProtocolError:
        log.warning("edge link %s sent a request without id", peer.name)
        return
    except Exception:
        log.exception("request %s failed", message.get("op"))
        req_id = message.get("id")
        response = wire.error(
            req_id if isinstance(req_id, int) else 0, ErrorCode.INTERNAL, "internal"
        )
    peer.send(response)


async def _respond_publishes(
    shard: Shard, peer: PeerWriter, messages: list[dict[str, Any]]
) -> None:
    """The publishes of one frame, ordered together per channel; answer each when done."""
    try:
        answers = await shard.publisher.answer_all(messages)
    except Exception:
        log.exception("%d publishes failed", len(messages))
        answers = [wire.error(m["id"], ErrorCode.INTERNAL, "internal") for m in messages]
    for answer in answers:
        peer.send(answer)


SHARD_KEY = web.AppKey("shard", Shard)
PEERS_KEY = web.AppKey("peers", set[PeerWriter])
SURVEYOR_KEY = web.AppKey("surveyor", Surveyor)


async def link_handler(request: web.Request) -> web.StreamResponse:
    shard = request.app[SHARD_KEY]
    settings = shard.config.origin
    name = request.query.get("peer", request.remote or "?")
    guard = request.app[LINK_GUARD_KEY]
    refused, proof = guard.check(request, name)
    if refused is not None:
        return guard.refuse(request, name, refused)
    ws = web.WebSocketResponse(
        max_msg_size=settings.link_max_frame, compress=False, autoping=True, heartbeat=None
    )
    await ws.prepare(request)
    if proof is not None:
        await ws.send_str(wire.proof_message(proof))
    surveys = request.query.get(wire.SURVEY_QUERY) == "1"
    peer = PeerWriter(ws, settings.link_write_limit, name, surveys, shard.store)
    peers = request.app[PEERS_KEY]
    surveyor = request.app[SURVEYOR_KEY]
    peers.add(peer)
    log.info("link from %s up", name)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:
                continue
            try:
                publishes = []
                for message in wire.decode_frame(msg.data):
                    if surveyor.handles(peer, message):
                        continue
                    if shard.is_immediate(message):
                        answer = shard.handle_now(peer, message)
                        peer.send(answer, shard.durable_marker(message), message["id"])
                    elif shard.publisher.batchable(message):
                        publishes.append(message)
                    else:
                        spawn(_respond(shard, peer, message))
                if shard.store is not None:
                    shard.store.flush_now()  # the frame's answers wait for these writes
                if publishes:
                    spawn(_respond_publishes(shard, peer, publishes))
            except wire.LinkProtocolError as exc:
                log.warning("edge link %s sent a bad frame: %s", name, exc)
                await ws.close(code=1002, message=b"bad frame")
                break
    finally:
        peers.discard(peer)
        shard.drop_peer(peer)
        surveyor.drop_peer(peer)
        await peer.close()
        log.info("link from %s down", name)
    return ws
