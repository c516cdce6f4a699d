"""Write coalescing and the outbound bound, with an in-memory transport double."""

from __future__ import annotations

import asyncio

from skyrelay.edge.outbox import Flusher, FrameOutbox, Outgoing
from skyrelay.edge.ws.frame import text_frame


class MemoryTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[list[bytes]] = []
        self.buffered = buffered
        self.closing = False

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(list(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


async def next_tick() -> None:
    await asyncio.sleep(0)


async def test_many_messages_in_one_tick_make_one_write_per_client() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    transports = [MemoryTransport() for _ in range(3)]
    outboxes = [FrameOutbox(t, flusher, 1 << 20, lambda: None) for t in transports]
    messages = [Outgoing(b'{"n":%d}' % n) for n in range(10)]
    for message in messages:
        for outbox in outboxes:
            outbox.push(message.ws_frame)
    assert all(t.writes == [] for t in transports)  # nothing written inside the tick
    await next_tick()
    for t in transports:
        assert len(t.writes) == 1
        assert t.writes[0] == [m.ws_frame for m in messages]
    assert flusher.ticks == 1


def test_a_message_is_framed_once_for_all_clients() -> None:
    message = Outgoing(b'{"push":{}}')
    assert message.ws_frame is message.ws_frame
    assert message.ws_frame == text_frame(b'{"push":{}}')


async def test_overflow_cuts_the_client_and_drops_its_queue() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    slow = MemoryTransport(buffered=900)
    cut: list[bool] = []
    outbox = FrameOutbox(slow, flusher, 1000, lambda: cut.append(True))
    outbox.push(b"x" * 50)
    assert not cut
    outbox.push(b"x" * 60)
    assert cut == [True]
    assert outbox.closed
    outbox.push(b"more")  # ignored once closed
    await next_tick()
    assert slow.writes == []


async def test_closing_transport_is_not_written() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    transport = MemoryTransport()
    outbox = FrameOutbox(transport, flusher, 1000, lambda: None)
    outbox.push(b"a")
    transport.closing = True
    await next_tick()
    assert transport.writes == []
    assert outbox.closed


def test_websocket_frame_lengths() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    medium = text_frame(b"a" * 300)
    assert medium[:4] == b"\x81\x7e\x01\x2c" and len(medium) == 304
    large = text_frame(b"a" * 70000)
    assert large[:2] == b"\x81\x7f" and int.from_bytes(large[2:10], "big") == 70000
