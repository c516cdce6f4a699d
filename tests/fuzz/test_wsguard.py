"""The masking check follows frame boundaries however the bytes are split."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from edge.wsguard import MaskCheck


def frame(payload: bytes, *, masked: bool = True, opcode: int = 0x1) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


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
