"""permessage-deflate (RFC 7692) on the edge's own WebSocket path: the negotiation, one
compressor shared by every connection of the process, and each connection's decompressor.
Pure code (zlib only).

The edge always answers ``server_no_context_takeover``: every message it sends is compressed
on its own (a full flush resets the compressor after each), so a publication's compressed
frame is the same bytes for every subscriber, made once per process and shared, like its
plain frame. A connection then holds no compressor at all: its only cost is the decompressor
of what its client sends, whose window the edge bounds with ``client_max_window_bits`` where
the client allows it (``edge.websocket_compression_window_bits``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

EXTENSION = "permessage-deflate"
# What every compressed message ends with before it is sent (RFC 7692 7.2.1).
_TAIL = b"\x00\x00\xff\xff"
# zlib's raw deflate takes window bits 9 to 15.
MIN_WINDOW_BITS, MAX_WINDOW_BITS = 9, 15


@dataclass(frozen=True, slots=True)
class Agreement:
    """What was agreed with one client."""

    # The client resets its compressor after each message (so can we, per message).
    client_no_context_takeover: bool
    # The window the client compresses with: our decompressor needs no more.
    client_window_bits: int

    def response(self) -> str:
        """The Sec-WebSocket-Extensions header of the 101 answer."""
        params = [EXTENSION, "server_no_context_takeover"]
        if self.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.client_window_bits < MAX_WINDOW_BITS:
            params.append(f"client_max_window_bits={self.client_window_bits}")
        return "; ".join(params)


def negotiate(offers: str, window_bits: int) -> Agreement | None:
    """The first permessage-deflate offer of the header ``offers`` we can take, or None.

    ``window_bits``: the client window we ask for where the client lets us choose
    (``client_max_window_bits`` offered); a client that does not may use the full window.
    """
    for offer in offers.split(","):
        parts = [p.strip() for p in offer.split(";")]
        if parts[0].lower() != EXTENSION:
            continue
        agreement = _accept(parts[1:], window_bits)
        if agreement is not None:
            return agreement
    return None


def _accept(params: list[str], window_bits: int) -> Agreement | None:
    no_takeover = False
    client_bits: int | None = None
    seen: set[str] = set()
    for param in params:
        name, _, value = param.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if not name or name in seen:
            return None  # a parameter twice: the offer is malformed (RFC 7692 7)
        seen.add(name)
        if name == "server_no_context_takeover" and not value:
            continue
        if name == "client_no_context_takeover" and not value:
            no_takeover = True
        elif name == "server_max_window_bits":
            if not value.isdigit() or int(value) != MAX_WINDOW_BITS:
                return None  # the shared compressor uses the full window
        elif name == "client_max_window_bits":
            if value and (not value.isdigit() or not 8 <= int(value) <= MAX_WINDOW_BITS):
                return None
            client_bits = min(int(value), window_bits) if value else window_bits
        else:
            return None
    if client_bits is None:
        client_bits = MAX_WINDOW_BITS  # the client did not let us choose: the full window
    return Agreement(no_takeover, max(client_bits, MIN_WINDOW_BITS))


class Compressor:
    """One per process: compresses each message on its own."""

    __slots__ = ("_deflate", "min_size")

    def __init__(self, level: int, min_size: int) -> None:
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -MAX_WINDOW_BITS)
        # Messages shorter than this go as they are (a frame says whether it is compressed).
        self.min_size = min_size

    def compress(self, payload: bytes) -> bytes:
        out = self._deflate.compress(payload) + self._deflate.flush(zlib.Z_FULL_FLUSH)
        return out[:-4] if out.endswith(_TAIL) else out


class Decompressor:
    """One client's messages: within ``max_size`` bytes once decompressed, or refused."""

    __slots__ = ("_inflate", "_takeover", "_window_bits", "max_size")

    def __init__(self, agreement: Agreement, max_size: int) -> None:
        self._takeover = not agreement.client_no_context_takeover
        self._window_bits = agreement.client_window_bits
        self._inflate: zlib._Decompress | None = None  # made on the first message
        self.max_size = max_size

    def decompress(self, data: bytes) -> bytes | None:
        """The message, or None when it is over ``max_size``; zlib.error if it is not deflate."""
        inflate = self._inflate
        if inflate is None:
            inflate = zlib.decompressobj(-max(self._window_bits, MIN_WINDOW_BITS))
            if self._takeover:
                self._inflate = inflate
        out = inflate.decompress(data + _TAIL, self.max_size + 1)
        if len(out) > self.max_size or inflate.unconsumed_tail:
            return None
        return out
