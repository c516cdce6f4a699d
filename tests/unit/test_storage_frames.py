"""The storage log's framing: records read back whole, and a torn or damaged tail is found,
never misread."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from skyrelay.origin.storage import frames

RECORDS = [{"k": "p", "ch": f"c{i}", "pubs": [{"offset": i, "data": "x" * i}]} for i in range(20)]


def log_bytes() -> tuple[bytes, list[int]]:
    """The frames of RECORDS, and where each one ends."""
    data, ends = b"", []
    for record in RECORDS:
        data += frames.encode(record)
        ends.append(len(data))
    return data, ends


def test_records_read_back_in_order() -> None:
    data, _ = log_bytes()
    scan = frames.decode_all(data)
    assert scan.records == RECORDS and scan.valid_end == len(data) and scan.problem is None
    assert frames.decode_all(b"") == frames.Scan([], 0, None)


def test_a_cut_anywhere_keeps_the_whole_frames_before_it() -> None:
    data, ends = log_bytes()
    for cut in range(len(data)):
        scan = frames.decode_all(data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        assert scan.records == RECORDS[:whole]
        assert scan.valid_end == (ends[whole - 1] if whole else 0)
        at_boundary = cut == scan.valid_end
        assert (scan.problem is None) == at_boundary
        if not at_boundary:
            assert scan.problem is not None and scan.problem.startswith("torn tail")


def test_a_flipped_byte_is_never_a_wrong_read() -> None:
    data, ends = log_bytes()
    rng = random.Random(7)
    for _ in range(400):
        position = rng.randrange(len(data))
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        scan = frames.decode_all(bytes(damaged))
        frame = next(i for i, end in enumerate(ends) if position < end)
        assert scan.records == RECORDS[:frame]  # everything before the damage, nothing after
        assert scan.problem is not None


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (struct.pack("<II", frames.MAX_BODY + 1, 0), "past the limit"),
        (frames.HEADER.pack(2, 0) + b"{}", "checksum"),
        (frames.HEADER.pack(3, zlib.crc32(b"{x}")) + b"{x}", "not JSON"),
        (frames.HEADER.pack(2, zlib.crc32(b"[]")) + b"[]", "not an object"),
    ],
)
def test_each_kind_of_damage_is_named(tail: bytes, problem: str) -> None:
    data, _ = log_bytes()
    scan = frames.decode_all(data + tail)
    assert scan.records == RECORDS and scan.valid_end == len(data)
    assert scan.problem is not None and problem in scan.problem
