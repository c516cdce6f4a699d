"""Origin checks and CORS for the HTTP transports (browser pages live on their own origin)."""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from skyrelay.edge.bodies import RequestError
from skyrelay.edge.httperrors import error_response
from skyrelay.edge.node import NODE_KEY
from skyrelay.protocol.codes import ErrorCode

# Seconds a browser may cache a preflight answer.
PREFLIGHT_MAX_AGE = 300


def origin_allowed(origin: str | None, patterns: Iterable[str]) -> bool:
    """Requests without Origin (native apps, servers) are allowed; browsers must match."""
    if origin is None:
        return True
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in patterns)


def cors_headers(request: web.Request) -> dict[str, str] | None:
    """Headers answering a cross-origin request, {} for a same-origin one, None if refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return {}
    if not origin_allowed(origin, request.app[NODE_KEY].config.edge.allowed_origins):
        return None
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return headers


def refused(request: web.Request) -> web.Response:
    origin = (request.headers.get("Origin") or "")[:200]
    return error_response(403, ErrorCode.PERMISSION_DENIED, f"origin {origin!r} not allowed")


async def preflight(request: web.Request) -> web.StreamResponse:
    headers = cors_headers(request)
    if headers is None:
        return refused(request)
    headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return web.Response(status=204, headers=headers)


CorsHandler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


def cors_checked(handler: CorsHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The preamble of the HTTP transports: a foreign origin is refused (403), the handler
    gets the CORS headers to answer with, and a ``RequestError`` it raises is answered as
    its JSON error, with them."""

    async def checked(request: web.Request) -> web.StreamResponse:
        cors = cors_headers(request)
        if cors is None:
            return refused(request)
        try:
            return await handler(request, cors)
        except RequestError as exc:
            return exc.response(cors)

    return checked
