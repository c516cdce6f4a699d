"""The masking check follows frame boundaries however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from skyrelay.edge.ws.guard import MaskCheck
from tests.support.hostile import frame

payloads = st.one_of(st.binary(max_size=130), st.integers(60000, 70000).map(lambda n: b"x" * n))


def feed_in_pieces(data: bytes, cuts: list[int]) -> bool:
    check = MaskCheck()
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        if not check.feed(data[start:point]):
            return False
        start = point
    return True


@given(st.lists(payloads, max_size=4), st.lists(st.integers(0, 10**6), max_size=8))
def test_masked_frames_pass_however_split(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frame(p) for p in parts)
    assert feed_in_pieces(data, cuts)


@given(
    st.lists(payloads, max_size=3),
    payloads,
    st.lists(payloads, max_size=2),
    st.lists(st.integers(0, 10**6), max_size=8),
)
def test_an_unmasked_frame_anywhere_is_caught(
    before: list[bytes], bad: bytes, after: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frame(p) for p in before) + frame(bad, masked=False)
    data += b"".join(frame(p) for p in after)
    assert not feed_in_pieces(data, cuts)
