"""What every HTTP endpoint of the edge does with a request before its own work: the body read
with a size limit and a deadline (a client that sends it slowly, the second half of slowloris,
gets 408 instead of holding a handler forever), parsed as a JSON object, and any problem
answered as a JSON error that names it (``RequestError``)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from skyrelay.edge.httperrors import error_response
from skyrelay.protocol.codes import ErrorCode

# Bytes asked of the socket buffer per read.
READ_CHUNK = 64 * 1024


class RequestError(Exception):
    """The request cannot be served; ``response()`` is the answer."""

    def __init__(self, status: int, message: str, code: int = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return error_response(self.status, self.code, self.message, headers)


async def read_body(request: web.Request, limit: int, deadline: float) -> bytes:
    """The whole body: at most ``limit`` bytes (else 413), within ``deadline`` seconds (else
    408); a malformed chunked body is a 400."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestError(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            while chunk := await request.content.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {deadline:g} s") from None
    except web.RequestPayloadError as exc:
        raise RequestError(400, f"malformed request body: {exc}") from None
    return b"".join(chunks)


def json_object(raw: bytes, what: str = "body") -> dict[str, Any]:
    """``raw`` as a JSON object; RequestError(400) saying what it is instead."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(400, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return value


async def read_json(request: web.Request, limit: int, deadline: float) -> dict[str, Any]:
    """The body as a JSON object, read within ``limit`` bytes and ``deadline`` seconds."""
    return json_object(await read_body(request, limit, deadline))
