"""``/status`` on an edge: a live page for operators, behind the API key or an admin token.

``GET /status`` is the page itself (it holds no data). The page logs in with ``POST
/status/login`` (header ``X-API-Key``, or ``Authorization: Bearer <admin token>``), which sets an
HttpOnly cookie signed with the API key, then follows ``GET /status/events``: server-sent
events, one JSON snapshot each ``edge.status_interval``. ``GET /status/data`` answers one
snapshot, for scripts. The same credentials work on every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from skyrelay.edge.api import api_key_accepted, header_api_key
from skyrelay.edge.auth import ExpiredToken, InvalidToken
from skyrelay.edge.httperrors import error_response
from skyrelay.edge.node import NODE_KEY, EdgeNode
from skyrelay.edge.status import StatusBoard
from skyrelay.protocol.codes import ErrorCode
from skyrelay.ring.prober import shard_summary

# The other workers' parts of the page (Mesh.status_parts).
SiblingParts = Callable[[], Awaitable[list[dict[str, Any]]]]

COOKIE = "skyrelay_status"
PAGE = Path(__file__).with_name("static") / "status.html"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
}


class StatusFeed:
    """Snapshots for every viewer: one origin round per interval, however many are watching."""

    def __init__(
        self, node: EdgeNode, board: StatusBoard, siblings: SiblingParts | None = None
    ) -> None:
        self.node = node
        self.board = board
        # The other workers of this edge, when it has several: their parts of the page.
        self.siblings = siblings
        self._lock = asyncio.Lock()
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0

    async def current(self) -> dict[str, Any]:
        async with self._lock:
            now = time.time()
            fresh_for = self.node.config.edge.status_interval / 2
            if self._last is None or now - self._last_at >= fresh_for:
                if self.siblings is not None:
                    origins, parts = await asyncio.gather(self._origins(), self.siblings())
                else:
                    origins, parts = await self._origins(), []
                self._last = self.board.snapshot(self.node, time.time(), origins, parts)
                self._last_at = now
            return self._last

    async def _origins(self) -> dict[str, dict[str, Any] | None]:
        shards = self.node.config.shards
        answers = await asyncio.gather(*(self._summary(s.url) for s in shards))
        return {s.id: answer for s, answer in zip(shards, answers, strict=True)}

    async def _summary(self, url: str) -> dict[str, Any] | None:
        http = self.node.http
        if http is None:
            return None
        limit = self.node.config.edge.status_origin_timeout
        return await shard_summary(http, url, limit, self.node.router.tls)


FEED_KEY = web.AppKey("status_feed", StatusFeed)


def _signing_key(node: EdgeNode) -> bytes:
    return (node.config.api_key or node.config.token_secret).encode()


def session_cookie(node: EdgeNode, now: float) -> str:
    expires = int(now + node.config.edge.status_session_ttl)
    signature = hmac.new(_signing_key(node), f"status:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{signature.hexdigest()}"


def cookie_valid(node: EdgeNode, value: str, now: float) -> bool:
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or int(expires) < now:
        return False
    expected = hmac.new(_signing_key(node), f"status:{expires}".encode(), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), signature)


def authorized(request: web.Request, *, cookie: bool = True) -> bool:
    node = request.app[NODE_KEY]
    now = time.time()
    key = header_api_key(request)
    if key and node.config.api_key:
        return api_key_accepted(node.config.api_key, key)
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential:
        try:
            node.verifier.verify_admin(credential.strip(), now)
        except (InvalidToken, ExpiredToken):
            return False
        return True
    return cookie and cookie_valid(node, request.cookies.get(COOKIE, ""), now)


def _refused() -> web.Response:
    message = "status needs the API key (X-API-Key) or an admin token (Bearer)"
    return error_response(401, ErrorCode.UNAUTHORIZED, message)


async def status_page(_: web.Request) -> web.StreamResponse:
    return web.Response(
        body=PAGE.read_bytes(), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def status_login(request: web.Request) -> web.StreamResponse:
    if not authorized(request, cookie=False):
        return _refused()
    node = request.app[NODE_KEY]
    response = web.Response(status=204)
    response.set_cookie(
        COOKIE,
        session_cookie(node, time.time()),
        max_age=int(node.config.edge.status_session_ttl),
        path="/status",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def status_data(request: web.Request) -> web.StreamResponse:
    if not authorized(request):
        return _refused()
    body = orjson.dumps(await request.app[FEED_KEY].current())
    return web.Response(body=body, content_type="application/json")


async def status_events(request: web.Request) -> web.StreamResponse:
    if not authorized(request):
        return _refused()
    feed = request.app[FEED_KEY]
    interval = feed.node.config.edge.status_interval
    response = EventSourceResponse(headers={"Cache-Control": "no-store"}, ping_interval=15)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while request.transport is not None and not request.transport.is_closing():
            await response.send(orjson.dumps(await feed.current()).decode())
            await asyncio.sleep(interval)
    return response


def add_status_routes(
    app: web.Application,
    node: EdgeNode,
    board: StatusBoard,
    siblings: SiblingParts | None = None,
) -> None:
    app[FEED_KEY] = StatusFeed(node, board, siblings)
    app.router.add_get("/status", status_page)
    app.router.add_post("/status/login", status_login)
    app.router.add_get("/status/data", status_data)
    app.router.add_get("/status/events", status_events)
