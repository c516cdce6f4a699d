"""The edge's frame reader: any bytes give events or a close code, never an exception, and how
the bytes are split never changes what comes out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from skyrelay.edge.ws.reader import Event, FrameReader, Kind
from tests.support.hostile import frame

MAX_MESSAGE = 70_000
payloads = st.one_of(st.binary(max_size=130), st.integers(60000, 70000).map(lambda n: b"x" * n))
opcodes = st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB])


def read(data: bytes, cuts: list[int]) -> list[Event]:
    reader = FrameReader(MAX_MESSAGE)
    points = sorted({c % (len(data) + 1) for c in cuts})
    events: list[Event] = []
    start = 0
    for point in [*points, len(data)]:
        events += reader.feed(data[start:point])
        start = point
    return events


@given(st.binary(max_size=2000), st.lists(st.integers(0, 10**6), max_size=8))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    events = read(data, cuts)
    # Only the last event may end the connection.
    assert all(e.kind not in (Kind.FAIL, Kind.CLOSE) for e in events[:-1])


@given(
    st.lists(st.tuples(payloads, opcodes, st.booleans()), max_size=5),
    st.lists(st.integers(0, 10**6), max_size=8),
)
def test_the_split_never_changes_the_events(
    frames: list[tuple[bytes, int, bool]], cuts: list[int]
) -> None:
    data = b"".join(frame(p, opcode=op, masked=m) for p, op, m in frames)
    whole = FrameReader(MAX_MESSAGE).feed(data)
    assert read(data, cuts) == whole
    for event in whole:
        if event.kind is Kind.FAIL:
            assert event.code in (1002, 1007, 1009)
