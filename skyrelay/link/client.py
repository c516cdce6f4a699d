"""The client side of a link: one persistent, multiplexed WebSocket to one shard.

Edges use it to reach shards, and shards use it to reach each other (replication).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp

from skyrelay.link import wire
from skyrelay.link.auth import ANSWER_HEADER, CHALLENGE_PATH, Keyring, answer_header
from skyrelay.protocol.codes import ErrorCode, ReplyError

log = logging.getLogger("skyrelay.link")


class LinkState(Enum):
    CONNECTING = "connecting"
    UP = "up"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LinkSettings:
    # Seconds a request may wait for the link to come up, then for its answer.
    request_timeout: float = 5.0
    # First delay between reconnect attempts; doubles up to 10x.
    reconnect_delay: float = 0.2
    # Largest frame accepted from the peer.
    max_frame: int = 64 << 20
    # Seconds between WebSocket pings on the link; a missed pong drops it.
    heartbeat: float = 5.0
    # How https:// peers are verified (``skyrelay.runtime.tls.shard_client_ssl``); True = aiohttp's
    # default.
    ssl: ssl.SSLContext | bool = True
    # The process's link secrets, for the challenge of shards that listen without TLS.
    keyring: Keyring = field(default_factory=Keyring)


def unavailable(shard_id: str, why: str) -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, f"shard {shard_id} {why}", temporary=True)


# Answers a shard's survey with this process's part of it (edges only).
SurveyHandler = Callable[[dict[str, Any]], dict[str, Any]]


def _lasting_cause(exc: BaseException) -> str:
    """Why a link attempt failed, where retrying alone will not mend it; '' otherwise."""
    if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 401:
        return f"refused ({exc.message}): check the link secret or certificate"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed: {exc}"
    return ""


def _expire(future: asyncio.Future[dict[str, Any]], peer_id: str) -> None:
    if not future.done():
        future.set_exception(unavailable(peer_id, "did not answer in time"))


class LinkClient:
    """Requests are pipelined and batched into one frame per loop turn; pushes go to
    ``on_push`` in the order the shard sent them. The link reconnects by itself and calls
    ``on_up`` / ``on_down`` so that its owner can resynchronise."""

    def __init__(
        self,
        peer_id: str,
        url: str,
        client_id: str,
        session: aiohttp.ClientSession,
        settings: LinkSettings,
        on_push: Callable[[LinkClient, dict[str, Any]], None],
        on_up: Callable[[LinkClient], None],
        on_down: Callable[[LinkClient], None],
        on_survey: SurveyHandler | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.url = url
        self.client_id = client_id
        self.state = LinkState.CONNECTING
        self.connects = 0
        self._session = session
        self._settings = settings
        self._on_push = on_push
        self._on_up = on_up
        self._on_down = on_down
        self._on_survey = on_survey
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._queue: list[bytes] = []
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.peer_id

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.peer_id}")

    async def close(self) -> None:
        self.state = LinkState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def request(
        self, op: str, params: dict[str, Any], deadline: float | None = None
    ) -> dict[str, Any]:
        """Send one request and wait (``deadline`` seconds at most) for its result; failures
        raise a temporary ReplyError."""
        limit = self._settings.request_timeout if deadline is None else deadline
        if not self._up.is_set():
            try:
                await asyncio.wait_for(self._up.wait(), limit)
            except TimeoutError:
                raise unavailable(self.id, "is unreachable") from None
        return await self.call(op, params, limit)

    def call(
        self, op: str, params: dict[str, Any], timeout: float | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send one request now; the future fails at once if the link is down, or after
        ``timeout``. No task is created, so callers can attach callbacks cheaply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self._up.is_set():
            future.set_exception(unavailable(self.id, "is unreachable"))
            return future
        req_id = next(self._ids)
        self._pending[req_id] = future
        self._enqueue({"id": req_id, "op": op, **params})
        limit = self._settings.request_timeout if timeout is None else timeout
        timer = loop.call_later(limit, _expire, future, self.id)

        def done(_: asyncio.Future[dict[str, Any]]) -> None:
            timer.cancel()
            self._pending.pop(req_id, None)

        future.add_done_callback(done)
        return future

    def send(self, op: str, params: dict[str, Any]) -> None:
        """Fire and forget (unsubscribe): the response is ignored, the order is kept."""
        if self._up.is_set():
            self._enqueue({"id": next(self._ids), "op": op, **params})

    def _enqueue(self, message: dict[str, Any]) -> None:
        self._queue.append(wire.encode_message(message))
        self._wake.set()

    async def _run(self) -> None:
        base = self._settings.reconnect_delay
        delay = base
        url = f"{self.url.rstrip('/')}{wire.LINK_PATH}"
        query = {"peer": self.client_id}
        if self._on_survey is not None:
            query[wire.SURVEY_QUERY] = "1"
        reported = ""
        while self.state is not LinkState.CLOSED:
            try:
                challenge = await self._challenge()
                headers = {} if challenge is None else {ANSWER_HEADER: challenge[1]}
                ws = await self._session.ws_connect(
                    url,
                    params=query,
                    headers=headers,
                    max_msg_size=self._settings.max_frame,
                    heartbeat=self._settings.heartbeat,
                    compress=0,
                    autoping=True,
                    ssl=self._settings.ssl,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # A refused link or certificate will not fix itself: say so, once per cause.
                cause = _lasting_cause(exc)
                if cause and cause != reported:
                    reported = cause
                    log.error("link to %s: %s", self.id, cause)
                await asyncio.sleep(delay)
                delay = min(delay * 2, base * 10)
                continue
            delay = base
            reported = ""
            if challenge is not None and not await self._proven(ws, challenge[0]):
                await ws.close()
                await asyncio.sleep(delay)
                continue
            try:
                await self._serve(ws)
            except Exception:  # a bug must not end the link for good: connect again
                log.exception("link to %s failed", self.id)
                await asyncio.sleep(delay)

    async def _challenge(self) -> tuple[str, str] | None:
        """(nonce, answer header) for a shard that listens without TLS, where this process
        holds link secrets; None when there is nothing to answer (TLS proves who we are, or
        the shard takes no challenge)."""
        secrets = self._settings.keyring.secrets
        if secrets is None or self.url.startswith("https://"):
            return None
        url = f"{self.url.rstrip('/')}{CHALLENGE_PATH}"
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout)
        async with self._session.get(url, timeout=timeout) as response:
            if response.status == 404:
                return None  # a shard without link secrets: it checks nothing
            response.raise_for_status()
            try:
                nonce = str((await response.json())["nonce"])
            except (KeyError, TypeError, ValueError) as exc:
                raise aiohttp.ClientPayloadError(f"not a challenge: {exc}") from None
        return nonce, answer_header(nonce, secrets.answer(nonce, self.client_id))

    async def _proven(self, ws: aiohttp.ClientWebSocketResponse, nonce: str) -> bool:
        """The shard's first message proves it holds a link secret too."""
        secrets = self._settings.keyring.secrets
        try:
            first = await ws.receive(timeout=self._settings.request_timeout)
        except TimeoutError:
            first = None
        proof = (
            wire.proof_of(first.data)
            if first is not None and first.type is aiohttp.WSMsgType.TEXT
            else ""
        )
        if secrets is not None and proof and secrets.proof_is_good(nonce, self.client_id, proof):
            return True
        log.error("link to %s: the shard did not prove it holds the link secret", self.id)
        return False

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.state = LinkState.UP
        self.connects += 1
        self._queue.clear()
        self._up.set()
        log.info("link to %s up", self.id)
        writer = asyncio.create_task(self._write(ws))
        try:
            self._on_up(self)
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._dispatch(msg.data)
        except wire.LinkProtocolError as exc:
            log.error("shard %s sent a bad frame: %s", self.id, exc)
        finally:
            writer.cancel()
            # The writer may have ended first, on a reset connection: its error must not
            # skip what follows, or the link would stay "up" with nobody serving it.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
                await writer
            await ws.close()
            self._up.clear()
            if self.state is LinkState.UP:
                self.state = LinkState.CONNECTING
            self._fail_pending()
            log.warning("link to %s down", self.id)
            self._on_down(self)

    def _dispatch(self, frame: bytes) -> None:
        for message in wire.decode_frame(frame):
            push = message.get("push")
            if push is not None:
                try:
                    self._on_push(self, push)
                except Exception:  # a bug in one handler must not take the link down
                    log.exception("push handler failed")
                continue
            survey = message.get("survey")
            if survey is not None:
                self._answer(survey)
                continue
            future = self._pending.get(message.get("id", 0))
            if future is None or future.done():
                continue
            error = message.get("error")
            if error is not None:
                leader = error.get("leader")
                future.set_exception(
                    ReplyError(
                        int(error.get("code", ErrorCode.INTERNAL)),
                        str(error.get("message", "")),
                        bool(error.get("temporary", False)),
                        leader=leader if isinstance(leader, str) else None,
                    )
                )
            else:
                future.set_result(message.get("result") or {})

    def _answer(self, survey: Any) -> None:
        """Answer a shard's survey at once, on this link (the handler does not wait)."""
        sid = survey.get("sid") if isinstance(survey, dict) else None
        if self._on_survey is None or not isinstance(survey, dict):
            answer = wire.survey_failure(sid, ErrorCode.BAD_REQUEST, "surveys not answered")
        else:
            try:
                answer = wire.survey_answer(sid, self._on_survey(survey))
            except ReplyError as exc:
                answer = wire.survey_failure(sid, exc.code, exc.message)
            except Exception:  # a bug in the handler must not take the link down
                log.exception("survey handler failed")
                answer = wire.survey_failure(sid, ErrorCode.INTERNAL, "internal")
        self._queue.append(answer)
        self._wake.set()

    def fail_pending(self, why: str) -> None:
        """Fail every request in flight (the peer was declared down: do not wait it out)."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(unavailable(self.id, why))

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
                try:
                    await ws.send_bytes(wire.join_frame(batch))
                except (ConnectionError, aiohttp.ClientError):
                    # The connection is going (reset, closing): end the reader too, so the
                    # link goes down, fails what is pending and connects again.
                    await ws.close()
                    return
