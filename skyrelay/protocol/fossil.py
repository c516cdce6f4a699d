"""Fossil delta patches (the format of Fossil SCM's ``delta.c``, which Centrifugo's clients
apply): ``create`` makes a patch that turns one byte string into another, ``apply`` runs one.
Pure code.

A patch is ``<target length>\\n``, then commands: ``<n>@<offset>,`` copies ``n`` bytes of the
source, ``<n>:<bytes>`` inserts ``n`` bytes, and ``<checksum>;`` ends it. Numbers are written
in base 64 with the digits ``0-9A-Z_a-z~``.

``create`` is written for what relays carry: a document whose next version changes a few of
its fields. It keeps the common prefix and suffix (found by comparing slices, at C speed), then
looks for blocks of the source in what is left, as Fossil does. Every literal it inserts starts
and ends on a UTF-8 character boundary of a UTF-8 target, so a patch of JSON is itself valid
UTF-8: JSON clients receive it as a string.
"""

from __future__ import annotations

import struct

DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_VALUE = {d: i for i, d in enumerate(DIGITS)}
# Length of the source blocks looked for in the target.
BLOCK = 16
# Middle parts shorter than this are inserted as they are: a block search costs more than it
# saves on them.
MIN_SEARCH = 2 * BLOCK


class PatchError(ValueError):
    """A patch that does not apply to this source."""


def _number(n: int) -> bytes:
    if n == 0:
        return b"0"
    out = bytearray()
    while n:
        out.append(DIGITS[n & 63])
        n >>= 6
    out.reverse()
    return bytes(out)


def checksum(data: bytes) -> int:
    """The sum of ``data`` as big-endian 32-bit words (the last one padded with zeros)."""
    padded = data + b"\0" * (-len(data) % 4)
    return int(sum(struct.unpack(f">{len(padded) // 4}I", padded))) & 0xFFFFFFFF


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _boundary(data: bytes, i: int) -> bool:
    """Is ``i`` a UTF-8 character boundary of ``data`` (not inside a character)?"""
    return i <= 0 or i >= len(data) or (data[i] & 0xC0) != 0x80


def _back_to_boundary(data: bytes, i: int) -> int:
    while not _boundary(data, i):
        i -= 1
    return i


def create(source: bytes, target: bytes) -> bytes:
    """A patch that turns ``source`` into ``target``."""
    out = [_number(len(target)), b"\n"]
    prefix = _back_to_boundary(target, _common_prefix(source, target))
    rest = len(target) - prefix
    suffix = _common_suffix(source[prefix:], target[prefix:])
    # The suffix starts on a boundary of the target too.
    while suffix and not _boundary(target, len(target) - suffix):
        suffix -= 1
    if prefix:
        out += (_number(prefix), b"@0,")
    _middle(out, source, target, prefix, prefix + rest - suffix)
    if suffix:
        out += (_number(suffix), b"@", _number(len(source) - suffix), b",")
    out += (_number(checksum(target)), b";")
    return b"".join(out)


def _insert(out: list[bytes], data: bytes) -> None:
    if data:
        out += (_number(len(data)), b":", data)


def _middle(out: list[bytes], source: bytes, target: bytes, start: int, end: int) -> None:
    """Commands for ``target[start:end]``: copies of source blocks found in it, and inserts."""
    if end - start < MIN_SEARCH or len(source) < BLOCK:
        _insert(out, target[start:end])
        return
    blocks: dict[bytes, int] = {}
    for offset in range(0, len(source) - BLOCK + 1, BLOCK):
        blocks.setdefault(source[offset : offset + BLOCK], offset)
    literal = start  # where the bytes not yet written start
    i = start
    while i + BLOCK <= end:
        found = blocks.get(target[i : i + BLOCK])
        if found is None:
            i += 1
            continue
        # Grow the match both ways, never past what is already written or the middle's end.
        back = _common_suffix(source[:found], target[literal:i])
        forward = _common_prefix(source[found + BLOCK :], target[i + BLOCK : end])
        first, last = i - back, i + BLOCK + forward
        # Both ends of the copy on character boundaries, so the literals around it are whole.
        while first < last and not _boundary(target, first):
            first += 1
        last = _back_to_boundary(target, last)
        if last - first < BLOCK:
            i += 1
            continue
        _insert(out, target[literal:first])
        out += (_number(last - first), b"@", _number(found - (i - first)), b",")
        literal = i = last
    _insert(out, target[literal:end])


def apply(source: bytes, patch: bytes) -> bytes:
    """The target ``patch`` makes from ``source``; PatchError if it does not fit."""
    pos = 0

    def number() -> int:
        nonlocal pos
        value = 0
        start = pos
        while pos < len(patch) and patch[pos] in _VALUE:
            value = (value << 6) | _VALUE[patch[pos]]
            pos += 1
        if pos == start:
            raise PatchError("a number was expected")
        return value

    size = number()
    if patch[pos : pos + 1] != b"\n":
        raise PatchError("the size must end with a newline")
    pos += 1
    out = bytearray()
    while pos < len(patch):
        count = number()
        op = patch[pos : pos + 1]
        pos += 1
        if op == b"@":
            offset = number()
            if patch[pos : pos + 1] == b",":
                pos += 1
            if offset + count > len(source) or len(out) + count > size:
                raise PatchError("a copy reaches past the source or the target")
            out += source[offset : offset + count]
        elif op == b":":
            if pos + count > len(patch) or len(out) + count > size:
                raise PatchError("an insert reaches past the patch or the target")
            out += patch[pos : pos + count]
            pos += count
        elif op == b";":
            result = bytes(out)
            if len(result) != size:
                raise PatchError("the target has the wrong size")
            if count != checksum(result):
                raise PatchError("the checksum does not match")
            return result
        else:
            raise PatchError(f"unknown command {op!r}")
    raise PatchError("the patch has no end")
