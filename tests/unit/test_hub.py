"""The hub's subscribe and move logic, with an in-memory router double (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from skyrelay.edge.channel import Channel, ChannelState
from skyrelay.edge.hub import Hub
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.outbox import Outgoing
from skyrelay.ring.health import HealthSettings, HealthView


class FakeLink:
    def __init__(self, shard_id: str) -> None:
        self.id = shard_id
        self.is_up = True
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, op: str, params: dict[str, Any]) -> None:
        self.sent.append((op, params))


class FakeRouter:
    """Answers subscribes from a script; pushes listed in ``early`` are dispatched before the
    answer reaches the waiting coroutine, as a real link does with one frame."""

    def __init__(self) -> None:
        self.health = HealthView(["a", "b"], HealthSettings())
        self.links = {"a": FakeLink("a"), "b": FakeLink("b")}
        self.leader = "a"
        self.hub: Hub | None = None
        self.answers: list[dict[str, Any]] = []
        self.early: list[tuple[str, dict[str, Any]]] = []

    def primary(self, channel: str) -> str:
        return self.leader

    async def request(
        self, channel: str, op: str, params: dict[str, Any], shard: str | None = None
    ) -> tuple[FakeLink, dict[str, Any]]:
        assert self.hub is not None
        link = self.links[shard or self.leader]
        for source, push in self.early:
            self.hub.on_push(self.links[source], push)  # type: ignore[arg-type]
        self.early = []
        return link, self.answers.pop(0)


class Recorder:
    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.lost: list[int] = []

    def deliver(self, message: Outgoing) -> None:
        for single in message.singles():
            self.offsets.append(orjson.loads(single.payload)["push"]["pub"]["offset"])

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        self.lost.append(code)

    def wants_join_leave(self, channel: str) -> bool:
        return False


def pub(offset: int, epoch: str = "e") -> dict[str, Any]:
    return {"ch": "c", "epoch": epoch, "pub": {"data": offset, "offset": offset}}


def setup() -> tuple[Hub, FakeRouter]:
    router = FakeRouter()
    hub = Hub(router, EdgeMetrics())  # type: ignore[arg-type]
    router.hub = hub
    return hub, router


def live(hub: Hub, channel: Channel, subscriber: Recorder) -> None:
    """A subscriber with nothing to wait for: its join ends at once."""
    hub.start_join(channel, subscriber)
    assert hub.finish_join(channel, subscriber) == []


async def test_pushes_right_behind_the_subscribe_answer_are_not_lost() -> None:
    hub, router = setup()
    router.answers = [{"epoch": "e", "offset": 5, "publications": []}]
    router.early = [("a", pub(6))]
    channel = await hub.acquire("c")
    sub = Recorder()
    live(hub, channel, sub)
    assert channel.offset == 6  # the early push was applied after the answer
    hub.on_push(router.links["a"], pub(7))  # type: ignore[arg-type]
    hub.batches.flush()
    assert sub.offsets == [7]


async def test_a_move_hands_over_missed_publications_then_continues_on_the_new_link() -> None:
    hub, router = setup()
    router.answers = [{"epoch": "e", "offset": 5, "publications": []}]
    channel = await hub.acquire("c")
    sub = Recorder()
    live(hub, channel, sub)

    router.leader = "b"
    router.answers = [{"epoch": "e", "offset": 6, "publications": [pub(6)["pub"]]}]
    # The new leader's next push, and a stale one from the old leader, arrive mid-move.
    router.early = [("b", pub(7)), ("a", pub(99))]
    hub.on_health_change()
    assert channel.state is ChannelState.MOVING
    for _ in range(10):
        await asyncio.sleep(0)
    assert channel.state is ChannelState.LIVE
    assert channel.link is router.links["b"]
    assert sub.offsets == [6, 7]
    assert ("unsub", {"ch": "c"}) in router.links["a"].sent
    hub.on_push(router.links["a"], pub(8))  # type: ignore[arg-type]  # old link: ignored
    hub.on_push(router.links["b"], pub(8))  # type: ignore[arg-type]
    hub.batches.flush()
    assert sub.offsets == [6, 7, 8]
    assert sub.lost == []


async def test_a_move_to_another_epoch_tells_subscribers_to_recover() -> None:
    hub, router = setup()
    router.answers = [{"epoch": "e", "offset": 5, "publications": []}]
    channel = await hub.acquire("c")
    sub = Recorder()
    live(hub, channel, sub)
    router.answers = [{"epoch": "new", "offset": 0, "publications": []}]
    hub.move(channel)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sub.lost == [2500]
    assert "c" not in hub.channels


async def test_a_gap_on_the_live_stream_is_never_silent() -> None:
    hub, router = setup()
    router.answers = [{"epoch": "e", "offset": 1, "publications": []}]
    channel = await hub.acquire("c")
    sub = Recorder()
    live(hub, channel, sub)
    hub.on_push(router.links["a"], pub(3))  # type: ignore[arg-type]
    assert sub.offsets == [] and sub.lost == [2500]


class BatchRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def deliver(self, message: Outgoing) -> None:
        self.calls.append(len(message.singles()))
        super().deliver(message)


async def test_publications_of_one_tick_go_out_as_one_batch_and_membership_changes_cut_it() -> None:
    hub, router = setup()
    router.answers = [{"epoch": "e", "offset": 0, "publications": []}]
    channel = await hub.acquire("c")
    first, second = BatchRecorder(), BatchRecorder()
    live(hub, channel, first)
    link = router.links["a"]
    for offset in (1, 2, 3):
        hub.on_push(link, pub(offset))  # type: ignore[arg-type]
    assert first.offsets == []  # not before the end of the tick
    # A subscriber joining mid-tick gets only what follows it; the first one what came before.
    live(hub, channel, second)
    hub.on_push(link, pub(4))  # type: ignore[arg-type]
    hub.on_push(link, pub(5))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    assert first.offsets == [1, 2, 3, 4, 5] and first.calls == [3, 2]
    assert second.offsets == [4, 5] and second.calls == [2]
    batch = Outgoing.batch([Outgoing(b"a"), Outgoing(b"b")])
    assert batch.payload == b"a\nb"
    assert batch.ws_frame[2:] == b"a\nb"  # one frame for both
