"""The channel stream: position, bounded history, TTL. No sockets, an explicit clock."""

from __future__ import annotations

import random

from skyrelay.origin.stream import ChannelStream


def stream(size: int = 5, ttl: float = 60.0) -> ChannelStream:
    return ChannelStream(size, ttl, epoch_factory=lambda: "ep")


def test_offsets_increase_by_one_per_publication() -> None:
    s = stream()
    pubs = [s.publish({"n": n}, now=100.0) for n in range(3)]
    assert [p.offset for p in pubs] == [1, 2, 3]
    assert (s.epoch, s.top) == ("ep", 3)
    assert pubs[0].to_wire() == {"data": {"n": 0}, "offset": 1, "time": 100000}


def test_history_is_bounded_by_size_but_the_position_keeps_going() -> None:
    s = stream(size=5)
    for n in range(12):
        s.publish(n, now=0.0)
    assert len(s) == 5
    page = s.history(-1, now=0.0)
    assert [p.offset for p in page.publications] == [8, 9, 10, 11, 12]
    assert page.offset == 12


def test_history_expires_after_ttl() -> None:
    s = stream(ttl=10.0)
    s.publish("old", now=0.0)
    s.publish("new", now=8.0)
    assert [p.data for p in s.history(-1, now=12.0).publications] == ["new"]
    assert s.history(-1, now=20.0).publications == []
    assert s.top == 2


def test_since_returns_what_follows_an_offset() -> None:
    s = stream(size=10)
    for n in range(6):
        s.publish(n, now=0.0)
    assert [p.offset for p in s.since(3, limit=-1, now=0.0).publications] == [4, 5, 6]
    assert [p.offset for p in s.since(3, limit=2, now=0.0).publications] == [4, 5]
    assert s.since(6, limit=-1, now=0.0).publications == []
    assert s.since(0, limit=-1, now=0.0).publications[0].offset == 1


def test_since_a_trimmed_offset_starts_at_the_oldest_kept() -> None:
    s = stream(size=3)
    for n in range(10):
        s.publish(n, now=0.0)
    assert [p.offset for p in s.since(2, limit=-1, now=0.0).publications] == [8, 9, 10]


def test_history_command_limits_since_and_reverse() -> None:
    s = stream(size=10)
    for n in range(6):
        s.publish(n, now=0.0)
    assert s.history(0, now=0.0).publications == []
    assert [p.offset for p in s.history(2, now=0.0).publications] == [1, 2]
    assert [p.offset for p in s.history(2, now=0.0, since=4).publications] == [5, 6]
    assert [p.offset for p in s.history(2, now=0.0, reverse=True).publications] == [6, 5]
    assert [p.offset for p in s.history(-1, now=0.0, since=3, reverse=True).publications] == [2, 1]


def test_skip_history_and_disabled_history_give_no_offset() -> None:
    s = stream()
    assert s.publish("x", now=0.0, skip_history=True).offset == 0
    assert stream(size=0).publish("x", now=0.0).offset == 0
    assert s.top == 0


def test_clear_keeps_the_position() -> None:
    s = stream()
    s.publish(1, now=0.0)
    s.clear()
    assert len(s) == 0
    assert s.publish(2, now=0.0).offset == 2


def test_each_stream_gets_its_own_epoch() -> None:
    assert ChannelStream(1, 1).epoch != ChannelStream(1, 1).epoch


def test_commit_returns_exactly_the_newly_visible_publications() -> None:
    rng = random.Random(7)
    for _ in range(200):
        stream = ChannelStream(rng.randint(1, 8), 3600, epoch_factory=lambda: "e")
        held: list[int] = []
        for _ in range(rng.randint(0, 30)):
            if rng.random() < 0.6:
                held.append(stream.publish({}, 1.0, commit=False).offset)
            else:
                before = stream.committed
                target = rng.randint(0, stream.top + 2)
                got = [p.offset for p in stream.commit(target)]
                kept = {p.offset for p in stream._entries}
                expected = [o for o in held if before < o <= min(target, stream.top) and o in kept]
                assert got == expected


def test_records_after_returns_what_follows_or_none_when_trimmed() -> None:
    rng = random.Random(11)
    for _ in range(200):
        stream = ChannelStream(rng.randint(1, 6), 3600, epoch_factory=lambda: "e")
        for _ in range(rng.randint(0, 15)):
            stream.publish({}, 1.0, commit=rng.random() < 0.5)
        kept = [p.offset for p in stream._entries]
        for offset in range(0, stream.top + 2):
            got = stream.records_after(offset)
            if offset >= stream.top:
                assert got == []
            elif not kept or kept[0] > offset + 1:
                assert got is None
            else:
                assert got is not None
                assert [r["offset"] for r in got] == [o for o in kept if o > offset]


def test_idempotency_keys_are_found_while_held_and_forgotten_with_their_publication() -> None:
    rng = random.Random(5)
    for _ in range(100):
        stream = ChannelStream(rng.randint(1, 5), 3600, epoch_factory=lambda: "e")
        for n in range(rng.randint(0, 20)):
            key = f"k{rng.randint(0, 6)}" if rng.random() < 0.8 else None
            stream.publish({"n": n}, 1.0, ikey=key)
            if rng.random() < 0.1:
                stream.clear()
        held = list(stream._entries)
        for k in range(7):
            expected = next((p for p in reversed(held) if p.ikey == f"k{k}"), None)
            assert stream.find_ikey(f"k{k}") is expected
        assert len(stream._ikeys) <= len(held)  # nothing kept for what is gone
        copy = ChannelStream.restore(stream.snapshot(), stream.size, 3600)
        for k in range(7):
            found = copy.find_ikey(f"k{k}")
            expected = stream.find_ikey(f"k{k}")
            assert (found and found.offset) == (expected and expected.offset)
