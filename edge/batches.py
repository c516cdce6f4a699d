"""Publications of one loop turn, per channel, handed to the channel's subscribers as one batch
at the end of the turn.

Under load one read from a shard's link carries many publications, and each subscriber then
gets one frame (or one write of framed events) for all of them instead of one per
publication. A lone publication goes out alone, a turn later at most. Anything that changes a
channel's subscribers calls ``hand_out`` first, so batching never changes who gets what.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from skyrelay.edge.channel import Channel
from skyrelay.edge.outbox import Outgoing

log = logging.getLogger("skyrelay.edge.batches")


class Batches:
    __slots__ = ("_deliveries", "_pending", "count", "publications")

    def __init__(self, deliveries: Counter) -> None:
        self._deliveries = deliveries
        # Channels with publications waiting for the end of the turn.
        self._pending: list[Channel] = []
        # Batches handed out, and the publications in them (their ratio is the mean batch).
        self.count = 0
        self.publications = 0

    def add(self, channel: Channel, message: Outgoing) -> None:
        if not channel.outgoing:
            if not self._pending:
                asyncio.get_running_loop().call_soon(self.flush)
            self._pending.append(channel)
        channel.outgoing.append(message)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for channel in pending:
            try:
                self.hand_out(channel)
            except Exception:  # one channel's failure must not strand the others' batches
                log.exception("hand-out failed on %s", channel.name)

    def hand_out(self, channel: Channel) -> None:
        """What waits for ``channel``, to its subscribers now."""
        messages = channel.outgoing
        if not messages:
            return
        channel.outgoing = []
        message = Outgoing.batch(messages)
        # A copy: a delivery can close a slow client, which leaves the channel at once.
        subscribers = tuple(channel.subscribers)
        for subscriber in subscribers:
            subscriber.deliver(message)
        self._deliveries.inc(len(subscribers) * len(messages))
        self.count += 1
        self.publications += len(messages)
