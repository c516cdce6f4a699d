"""Every HTTP error the edge answers is JSON naming the problem: aiohttp's own answers (no such
path, method not allowed, body too large) come as plain text, so they are rewritten here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import hdrs, web

from skyrelay.protocol.codes import ErrorCode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps({"error": {"code": int(code), "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _message(request: web.Request, exc: web.HTTPException) -> tuple[int, str]:
    if isinstance(exc, web.HTTPNotFound):
        return ErrorCode.METHOD_NOT_FOUND, f"no such path: {request.path[:200]}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return (
            ErrorCode.METHOD_NOT_FOUND,
            f"method {request.method} not allowed here; use {allowed}",
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ErrorCode.BAD_REQUEST, "request body too large"
    return ErrorCode.BAD_REQUEST, (exc.reason or "bad request").lower()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code, message = _message(request, exc)
        headers = {k: v for k, v in exc.headers.items() if k == hdrs.ALLOW}
        return error_response(exc.status, code, message, headers)
