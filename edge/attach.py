"""What every transport does to put a client on a socket: a bounded outbox (a client past it
is cut as slow, 3008) and, for HTTP streams, waiting until the stream is over."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from skyrelay.edge.node import EdgeNode
from skyrelay.edge.outbox import FrameOutbox, tune_socket
from skyrelay.protocol.codes import DisconnectCode

# How often a stream handler checks that its client is still there, in seconds.
LIVENESS_CHECK = 1.0


class Attachment:
    __slots__ = ("client", "outbox")

    def __init__(self, node: EdgeNode, transport: Any) -> None:
        settings = node.config.edge
        tune_socket(transport, settings.client_send_buffer)
        self.client: Any = None  # the Client, once built around this outbox
        self.outbox = FrameOutbox(
            transport, node.flusher, settings.client_outbound_limit, self._overflow
        )

    def _overflow(self) -> None:
        if self.client is not None:
            self.client.close(DisconnectCode.SLOW)


async def until_done(done: asyncio.Event, transport: Any) -> None:
    """Until the client is closed or its socket goes away."""
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), LIVENESS_CHECK)
        if transport.is_closing():
            return
