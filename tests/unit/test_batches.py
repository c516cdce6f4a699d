"""Publications of one loop turn go to each subscriber as one batch; one failing channel does
not strand the others."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from skyrelay.edge.batches import Batches
from skyrelay.edge.channel import Channel
from skyrelay.edge.outbox import Outgoing


class Receiver:
    def __init__(self, fail: bool = False) -> None:
        self.got: list[list[bytes]] = []
        self.fail = fail

    def deliver(self, message: Outgoing) -> None:
        if self.fail:
            raise RuntimeError("broken subscriber")
        self.got.append([single.payload for single in message.singles()])

    def wants_join_leave(self, channel: str) -> bool:
        return False

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        pass


def channel(name: str, *receivers: Receiver) -> Channel:
    made = Channel(name, asyncio.get_running_loop().create_future(), (0, 0.0))
    for receiver in receivers:
        made.subscribers[receiver] = None
    return made


def batches() -> tuple[Batches, CollectorRegistry]:
    registry = CollectorRegistry()
    return Batches(Counter("deliveries", "", registry=registry)), registry


async def test_one_turn_is_one_batch_per_subscriber() -> None:
    made, registry = batches()
    a, b = Receiver(), Receiver()
    ch = channel("c", a, b)
    for n in range(3):
        made.add(ch, Outgoing(b"%d" % n))
    assert a.got == []  # nothing before the end of the turn
    await asyncio.sleep(0)
    assert a.got == b.got == [[b"0", b"1", b"2"]]
    assert (made.count, made.publications) == (1, 3)
    assert registry.get_sample_value("deliveries_total") == 6


async def test_hand_out_delivers_what_waits_at_once() -> None:
    made, _ = batches()
    a = Receiver()
    ch = channel("c", a)
    made.add(ch, Outgoing(b"x"))
    made.hand_out(ch)  # a subscriber change is coming: what waits goes first
    assert a.got == [[b"x"]]
    await asyncio.sleep(0)
    assert a.got == [[b"x"]]  # and not again at the end of the turn


async def test_a_failing_channel_strands_no_other() -> None:
    made, _ = batches()
    good = Receiver()
    broken = channel("broken", Receiver(fail=True))
    fine = channel("fine", good)
    made.add(broken, Outgoing(b"1"))
    made.add(fine, Outgoing(b"2"))
    await asyncio.sleep(0)
    assert good.got == [[b"2"]]
