"""Reading request bodies with a size limit and a deadline: a client that sends a body slowly
(slow-body, the second half of slowloris) gets 408 instead of holding a handler forever."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edge.httperrors import error_response
from skyrelay.protocol.codes import ErrorCode

# Bytes asked of the socket buffer per read.
READ_CHUNK = 64 * 1024


class BodyError(Exception):
    """The body cannot be used; ``response()`` is the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return error_response(self.status, ErrorCode.BAD_REQUEST, self.message, headers)


async def read_body(request: web.Request, limit: int, deadline: float) -> bytes:
    """The whole body: at most ``limit`` bytes (else 413), within ``deadline`` seconds (else
    408); a malformed chunked body is a 400."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            while chunk := await request.content.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, f"request body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, f"request body not received within {deadline:g} s") from None
    except web.RequestPayloadError as exc:
        raise BodyError(400, f"malformed request body: {exc}") from None
    return b"".join(chunks)
