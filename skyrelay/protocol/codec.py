"""What a wire format of the client protocol provides. JSON (``edge.json_codec`` for the server
half, ``skyrelay.client.json_codec`` for the client half) and protobuf (``edge.protobuf_codec``,
``skyrelay.client.protobuf_codec``) implement the same two halves.

In every codec ``PING`` and ``PONG`` are the encoded heartbeats (bytes); the decoded ones are
the ``Ping`` and ``Pong`` messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from skyrelay.protocol.messages import Command, Ping, Pong, Push, Reply


class ServerCodec(Protocol):
    """A wire format as a server speaks it: commands in, replies and pushes out."""

    @property
    def NAME(self) -> str:
        """``json`` or ``protobuf``."""
        ...

    @property
    def PING(self) -> bytes: ...

    @property
    def SEPARATOR(self) -> bytes:
        """What goes between the encoded replies of one transport message."""
        ...

    def decode_commands(self, data: bytes | str) -> list[Command | Pong]:
        """Every command of one transport message, in order; a malformed one raises
        ``Disconnect`` (3501)."""
        ...

    def reply(self, cmd_id: int, method: str, result: dict[str, Any]) -> bytes: ...

    def error_reply(
        self, cmd_id: int, code: int, message: str, temporary: bool = False
    ) -> bytes: ...

    def push(self, channel: str, kind: str, body: dict[str, Any]) -> bytes: ...

    def delta_pub(self, pub: dict[str, Any], data: bytes, delta: bool) -> dict[str, Any]:
        """A publication as a delta subscription carries it: ``data`` the JSON bytes of its
        data, or a patch when ``delta``."""
        ...

    def pub_push(self, channel: str, pub: dict[str, Any]) -> bytes: ...

    def unsubscribe_push(self, channel: str, code: int, reason: str) -> bytes: ...

    def disconnect_push(self, code: int, reason: str) -> bytes: ...


class ClientCodec(Protocol):
    """A wire format as a client speaks it: commands out, replies and pushes in."""

    @property
    def NAME(self) -> str: ...

    @property
    def PONG(self) -> bytes: ...

    def encode(self, commands: Iterable[dict[str, Any]]) -> bytes: ...

    def decode(self, data: bytes | str) -> list[Reply | Push | Ping]:
        """Every reply, push and ping of one transport message, in order."""
        ...
