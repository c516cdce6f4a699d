"""Per-client outbound buffers with write coalescing.

Fan-out appends pre-built frames to each client's outbox without awaiting. Once per event-loop
tick the ``Flusher`` writes every dirty outbox with a single ``writelines`` call, so a client
receives at most one write per tick however many messages were queued for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from skyrelay.edge import json_codec
from skyrelay.edge.ws.frame import text_frame
from skyrelay.protocol.codec import ServerCodec

log = logging.getLogger("skyrelay.edge.outbox")

# Encodes a shared message in the codec given.
Make = Callable[[ServerCodec], bytes]


class FrameKind(Hashable, Protocol):
    """A kind of WebSocket connection (``edge.ws.framing.WsFraming``): its codec, its frame."""

    @property
    def codec(self) -> ServerCodec: ...  # pragma: no cover

    def frame(self, payload: bytes) -> bytes: ...  # pragma: no cover


class DeltaSource(Protocol):
    """A publication's two forms for delta subscribers (``edge.delta.DeltaPublication``)."""

    @property
    def kept(self) -> bool: ...  # pragma: no cover

    def full(self, codec: ServerCodec) -> bytes: ...  # pragma: no cover

    def patched(self, codec: ServerCodec) -> bytes: ...  # pragma: no cover


def tune_socket(transport: Any, send_buffer: int) -> None:
    """Bound the kernel's send buffer of a client socket, when configured."""
    if send_buffer <= 0:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)


def http_chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: stream responses are chunked, and we write them ourselves."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _ws(payload: bytes) -> bytes:
    return text_frame(payload)


def _stream_line(payload: bytes) -> bytes:
    return http_chunk(payload + b"\n")


def _sse_event(payload: bytes) -> bytes:
    return http_chunk(b"data: " + payload + b"\n\n")


class Outgoing:
    """One reply or push, or a batch of pushes, encoded once per wire format; each transport's
    framing is built once on first use and shared by every client on that transport.

    A shared message (a push to many clients) is made with ``make``, which encodes it in the
    codec asked for: ``payload`` is its JSON form, ``in_codec`` the others, each built on first
    use, so a channel's publication costs one encode per wire format its subscribers speak.
    A batch goes to WebSocket clients as one frame of several pushes (the protocol allows
    several replies per frame), and to the other transports as one framed event per push, in
    one write.
    """

    __slots__ = (
        "_forms",
        "_framed",
        "_make",
        "_other_frame",
        "_other_kind",
        "_payload",
        "_ws_frame",
        "delta",
        "parts",
        "position",
    )

    def __init__(
        self,
        payload: bytes | None = None,
        position: tuple[str, str, int] | None = None,
        parts: tuple[Outgoing, ...] = (),
        make: Make | None = None,
        delta: DeltaSource | None = None,
    ) -> None:
        self._payload = payload
        self._make = make
        # A publication's forms for delta subscribers (see ``delta_view``).
        self.delta = delta
        # (channel, epoch, offset) of a publication push (of a batch's last one), for
        # transports that resume by id.
        self.position = position
        # The single pushes of a batch; empty for a single message.
        self.parts = parts
        self._forms: dict[Any, Outgoing] | None = None
        self._framed: dict[Hashable, bytes] | None = None
        # The WebSocket frame has a slot of its own: it is read once per WebSocket delivery,
        # the hottest line of a fan-out.
        self._ws_frame: bytes | None = None
        # The frame for one other kind of WebSocket connection (protobuf, compressed), in
        # slots too: a channel's subscribers rarely speak more than two kinds.
        self._other_kind: FrameKind | None = None
        self._other_frame = b""

    @classmethod
    def shared(
        cls,
        make: Make,
        position: tuple[str, str, int] | None = None,
        delta: DeltaSource | None = None,
    ) -> Outgoing:
        return cls(None, position, (), make, delta)

    @classmethod
    def batch(cls, messages: list[Outgoing]) -> Outgoing:
        """One message for several: itself when there is one."""
        if len(messages) == 1:
            return messages[0]
        return cls(None, messages[-1].position, tuple(messages))

    @property
    def payload(self) -> bytes:
        """The JSON form."""
        payload = self._payload
        if payload is None:
            if self.parts:
                payload = json_codec.SEPARATOR.join(m.payload for m in self.parts)
            else:
                assert self._make is not None
                payload = self._make(json_codec)
            self._payload = payload
        return payload

    def in_codec(self, codec: ServerCodec) -> Outgoing:
        """This message in ``codec``'s wire format; JSON is the message itself."""
        if codec is json_codec:
            return self
        forms = self._forms
        if forms is None:
            forms = self._forms = {}
        found = forms.get(codec)
        if found is None:
            if self.parts:
                parts = tuple(p.in_codec(codec) for p in self.parts)
                joined = codec.SEPARATOR.join(p.payload for p in parts)
                found = Outgoing(joined, self.position, parts)
            else:
                assert self._make is not None, "a shared message needs its maker"
                found = Outgoing(self._make(codec), self.position)
            forms[codec] = found
        return found

    def delta_view(self, first_full: bool) -> Outgoing:
        """This publication (or batch of one channel's) as a delta subscriber gets it: patches
        where it holds the base, in full where ``first_full`` says it does not yet, and after
        a publication kept out of history. Built once per case, shared."""
        forms = self._forms
        if forms is None:
            forms = self._forms = {}
        key = ("delta", first_full)
        found = forms.get(key)
        if found is None:
            if self.parts:
                views = []
                full = first_full
                for part in self.parts:
                    views.append(part.delta_view(full))
                    full = part.delta is None or not part.delta.kept
                found = Outgoing(None, self.position, tuple(views))
            elif self.delta is None:
                found = self
            else:
                source = self.delta
                make = source.full if first_full or not source.kept else source.patched
                found = Outgoing.shared(make, self.position, source)
            forms[key] = found
        return found

    def leaves_base(self) -> bool:
        """Does a delta subscriber hold a base after this (its last publication was kept)?"""
        last = self.parts[-1] if self.parts else self
        return last.delta is not None and last.delta.kept

    def singles(self) -> tuple[Outgoing, ...]:
        return self.parts or (self,)

    def framed(self, framing: Callable[[bytes], bytes]) -> bytes:
        parts = self.parts
        if parts:
            return self.framed_as(framing, lambda: b"".join(p.framed(framing) for p in parts))
        return self.framed_as(framing, lambda: framing(self.payload))

    def framed_as(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """The framing cached under ``key``; built once, shared by every client using it."""
        cache = self._framed
        if cache is None:
            cache = self._framed = {}
        found = cache.get(key)
        if found is None:
            found = cache[key] = build()
        return found

    @property
    def ws_frame(self) -> bytes:
        frame = self._ws_frame
        if frame is None:
            frame = self._ws_frame = _ws(self.payload)
        return frame

    def frame_for(self, kind: FrameKind) -> bytes:
        """This message as one frame for WebSocket connections of ``kind`` (a whole batch in
        one frame, as ``ws_frame``), built once."""
        if self._other_kind is kind:
            return self._other_frame
        cache = self._framed
        found = cache.get(kind) if cache is not None else None
        if found is None:
            encoded = self.in_codec(kind.codec)
            found = kind.frame(encoded.payload)
            if self._other_kind is None:
                self._other_kind, self._other_frame = kind, found
            else:
                if cache is None:
                    cache = self._framed = {}
                cache[kind] = found
        return found


# The framings of the streaming transports, keyed for Outgoing.framed.
WS_FRAME = _ws
STREAM_LINE = _stream_line
SSE_EVENT = _sse_event


class WriteTransport(Protocol):
    def writelines(self, data: list[bytes]) -> None: ...  # pragma: no cover
    def get_write_buffer_size(self) -> int: ...  # pragma: no cover
    def is_closing(self) -> bool: ...  # pragma: no cover


class Flushable(Protocol):
    def flush(self) -> None: ...  # pragma: no cover


class Flusher:
    """Runs ``flush`` on every outbox marked dirty during this loop tick, once."""

    __slots__ = ("_dirty", "_loop", "_scheduled", "flushes", "ticks")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # None: the running loop, looked up on the first write (the flusher may be built
        # before the server's loop runs).
        self._loop = loop
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self.ticks = 0
        self.flushes = 0

    def mark(self, outbox: Flushable) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        self.ticks += 1
        self.flushes += len(dirty)
        for outbox in dirty:
            try:
                outbox.flush()
            except Exception:  # one broken socket must not stop the others' writes
                log.exception("flush failed")


class FrameOutbox:
    """Queues pre-built frames for one socket; overflow past ``limit`` bytes calls ``on_overflow``.

    The limit counts our queue plus what the transport still holds, so a client that stops
    reading is cut once the kernel and the transport buffers are full.
    """

    __slots__ = ("_chunks", "_dirty", "_flusher", "_limit", "_on_overflow", "_size", "_transport")

    def __init__(
        self,
        transport: WriteTransport,
        flusher: Flusher,
        limit: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._transport: WriteTransport | None = transport
        self._flusher = flusher
        self._limit = limit
        self._on_overflow = on_overflow
        self._chunks: list[bytes] = []
        self._size = 0
        self._dirty = False

    @property
    def closed(self) -> bool:
        return self._transport is None

    def push(self, frame: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._chunks.append(frame)
        self._size += len(frame)
        if self._size + transport.get_write_buffer_size() > self._limit:
            self.close()
            self._on_overflow()
            return
        if not self._dirty:
            self._dirty = True
            self._flusher.mark(self)

    def flush(self) -> None:
        self._dirty = False
        transport = self._transport
        if transport is None or not self._chunks:
            return
        if transport.is_closing():
            self.close()
            return
        chunks, self._chunks = self._chunks, []
        self._size = 0
        transport.writelines(chunks)

    def close(self) -> None:
        """Drop what is queued and accept nothing more."""
        self._transport = None
        self._chunks = []
        self._size = 0
