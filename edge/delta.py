"""Fossil delta compression for the subscribers that asked for it (``delta: "fossil"``, where
the namespace allows it). Pure code.

A publication marked delta goes to them as a patch against the channel's previous publication,
the base every such subscriber holds: the previous one is what the channel's stream (the hub's
hot cache) has just before it, never per-subscriber state. A subscriber without the base (just
subscribed, or after a publication kept out of history) gets the full data first. A patch that
would not be smaller than the data is not sent. Each form is made once per publication and
shared by every subscriber that gets it.

On a delta subscription a JSON client takes every publication's data as a string (full or
patch), a protobuf one as bytes: ``ServerCodec.delta_pub`` writes each form.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.fossil import create

FOSSIL = "fossil"


def data_bytes(pub: dict[str, Any]) -> bytes:
    """The bytes a delta client holds for a publication: its data as JSON."""
    return orjson.dumps(pub.get("data"))


def patch_or_none(base: bytes, data: bytes) -> bytes | None:
    """The patch from ``base`` to ``data``, when it is smaller than ``data``."""
    patch = create(base, data)
    return patch if len(patch) < len(data) else None


class DeltaPublication:
    """One publication of a channel as delta subscribers get it: in full, or patched."""

    __slots__ = ("_base", "_data", "_patch", "_patched", "channel", "kept", "marked", "pub")

    def __init__(
        self, channel: str, pub: dict[str, Any], base: dict[str, Any] | None, marked: bool
    ) -> None:
        self.channel = channel
        self.pub = pub
        # The previous publication of the stream, when the hot cache has it.
        self._base = base
        # Published as a delta: only those are patched.
        self.marked = marked
        # In history: a subscriber that got it holds it as its base.
        self.kept = bool(pub.get("offset"))
        self._data: bytes | None = None
        self._patch: bytes | None = None
        self._patched = False

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = data_bytes(self.pub)
        return self._data

    def patch(self) -> bytes | None:
        """Made once, on the first delivery that can use it."""
        if not self._patched:
            self._patched = True
            if self.marked and self.kept and self._base is not None:
                self._patch = patch_or_none(data_bytes(self._base), self.data)
        return self._patch

    def full(self, codec: ServerCodec) -> bytes:
        return codec.pub_push(self.channel, codec.delta_pub(self.pub, self.data, False))

    def patched(self, codec: ServerCodec) -> bytes:
        patch = self.patch()
        if patch is None:
            return self.full(codec)
        return codec.pub_push(self.channel, codec.delta_pub(self.pub, patch, True))


def delta_chain(codec: ServerCodec, pubs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recovered publications for a delta subscriber: the first in full, each next one a patch
    against the one before it where that is smaller."""
    out = []
    previous: bytes | None = None
    for pub in pubs:
        data = data_bytes(pub)
        patch = patch_or_none(previous, data) if previous is not None else None
        out.append(
            codec.delta_pub(pub, data, False)
            if patch is None
            else codec.delta_pub(pub, patch, True)
        )
        previous = data
    return out
