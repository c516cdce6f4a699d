"""How one kind of WebSocket connection turns messages into frames: text for JSON, binary for
protobuf, compressed or not. Every connection of a kind shares one ``WsFraming``, so a shared
message's frame is built once for all of them (``Outgoing.framed`` caches it by framing).
"""

from __future__ import annotations

from skyrelay.edge import json_codec
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.ws.deflate import Compressor
from skyrelay.edge.ws.frame import binary_frame, compressed_frame, text_frame
from skyrelay.protocol.codec import ServerCodec


class WsFraming:
    __slots__ = ("_binary", "codec", "compressor", "plain")

    def __init__(self, codec: ServerCodec, compressor: Compressor | None = None) -> None:
        self.codec = codec
        self.compressor = compressor
        self._binary = codec is not json_codec
        # JSON uncompressed: a message's frame is its own ``ws_frame``.
        self.plain = compressor is None and not self._binary

    def frame(self, payload: bytes) -> bytes:
        """One message as a frame (compressed when worth it)."""
        compressor = self.compressor
        if compressor is not None and len(payload) >= compressor.min_size:
            return compressed_frame(self._binary, compressor.compress(payload))
        return binary_frame(payload) if self._binary else text_frame(payload)

    def message_frame(self, message: Outgoing) -> bytes:
        """A shared message's frame, built once for every connection of this kind."""
        if self.plain:
            return message.ws_frame  # the hottest case, in a slot of its own
        return message.frame_for(self)


class Framings:
    """The framings of one edge process, one per kind of connection."""

    __slots__ = ("_kinds", "compressor")

    def __init__(self, compressor: Compressor) -> None:
        self.compressor = compressor
        self._kinds: dict[tuple[str, bool], WsFraming] = {}

    def get(self, codec: ServerCodec, compressed: bool) -> WsFraming:
        key = (codec.NAME, compressed)
        found = self._kinds.get(key)
        if found is None:
            found = self._kinds[key] = WsFraming(codec, self.compressor if compressed else None)
        return found
