"""Where aiohttp's WebSocket server falls short of RFC 6455, on the edge's aiohttp path.

- A server must close the connection on a client frame that is not masked; aiohttp's reader
  accepts them. ``MaskCheck`` follows the client's frame boundaries (headers only, no payload
  copying) and fails the connection with 1002 at the first unmasked frame.
- After a failure (a message over the size limit: 1009) aiohttp closes the socket at once,
  while the client may still be sending; the kernel then answers with a reset and the client
  never reads the close frame. ``keep_reading_after_close`` and ``linger`` end our side after
  the close frame and drop what still comes, for a bounded time, as the edge's own path does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, web

log = logging.getLogger("skyrelay.edge.ws.guard")


class MaskCheck:
    """Sans-I/O: feed the client's bytes in order; False once a frame arrives unmasked."""

    __slots__ = ("_head", "_skip", "failed")

    def __init__(self) -> None:
        self._head = b""  # an incomplete frame header
        self._skip = 0  # payload bytes (and mask) of the current frame still to come
        self.failed = False

    def feed(self, data: bytes) -> bool:
        view = memoryview(data)
        while view and not self.failed:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 2 - len(self._head)
            if need > 0:
                self._head += bytes(view[:need])
                view = view[need:]
                if len(self._head) < 2:
                    break
            if not self._head[1] & 0x80:
                self.failed = True
                break
            size = self._head[1] & 0x7F
            extra = 2 if size == 126 else 8 if size == 127 else 0
            need = 2 + extra - len(self._head)
            if need > 0:
                self._head += bytes(view[:need])
                view = view[need:]
                if len(self._head) < 2 + extra:
                    break
            if extra:
                size = int.from_bytes(self._head[2 : 2 + extra], "big")
            self._head = b""
            self._skip = 4 + size  # the mask, then the payload
        return not self.failed


class _GuardedParser:
    """Stands in for aiohttp's frame reader on one connection: checks, then hands on."""

    __slots__ = ("_check", "_inner", "_queue")

    def __init__(self, inner: Any, queue: Any, check: MaskCheck) -> None:
        self._inner = inner
        self._queue = queue
        self._check = check

    def feed_data(self, data: bytes) -> Any:
        if self._check.failed or not self._check.feed(data):
            return _fail(self._queue)
        return self._inner.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _fail(queue: Any) -> tuple[bool, bytes]:
    queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, "unmasked client frame"))
    return True, b""  # what aiohttp's reader answers on a protocol error


def pending_bytes(request: web.Request) -> bytes:
    """Frame bytes that came with the upgrade request; call before ``prepare``."""
    tail = getattr(request.protocol, "_message_tail", b"")
    return bytes(tail) if isinstance(tail, bytes | bytearray) else b""


def require_masking(request: web.Request, ws: web.WebSocketResponse, early: bytes) -> bool:
    """Install the check on a prepared WebSocket; ``early`` is ``pending_bytes`` from before
    ``prepare``. False (and the connection unguarded) if aiohttp's internals have moved."""
    protocol = request.protocol
    inner = getattr(protocol, "_payload_parser", None)
    queue = getattr(ws, "_reader", None)
    if inner is None or queue is None or not hasattr(queue, "set_exception"):
        log.warning("cannot check WebSocket frame masking with this aiohttp version")
        return False
    check = MaskCheck()
    if not check.feed(early):
        _fail(queue)
        return True
    protocol._payload_parser = _GuardedParser(inner, queue, check)
    return True


# Seconds a failed connection's remaining input is read and dropped before the socket closes.
LINGER_TIMEOUT = 2.0
# How often ``linger`` looks whether the client has gone.
_LINGER_STEP = 0.05


def keep_reading_after_close(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Make aiohttp end only our side when it closes (its close frame is out first)."""

    def half_close() -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    ws._close_transport = half_close  # type: ignore[method-assign]


async def linger(transport: Any) -> None:
    """Wait, at most ``LINGER_TIMEOUT``, for the client of a failed connection to stop."""
    deadline = time.monotonic() + LINGER_TIMEOUT
    # aiohttp's protocol tells no one when the client hangs up, so this looks.
    while not transport.is_closing() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(_LINGER_STEP)
