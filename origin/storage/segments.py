"""The storage log on disk: numbered segment files of checksummed frames, appended to in
order and deleted whole once compaction has rewritten what they held.

What belongs here: files, their names, appending, syncing, reading back and cutting a damaged
tail. What never does: what a record means, channels, or when to write (``origin.storage.store``).
Calls block; the store decides which thread makes them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyrelay.origin.storage import frames

log = logging.getLogger("skyrelay.origin.storage")

SUFFIX = ".log"


def segment_name(number: int) -> str:
    return f"{number:012d}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class Damage:
    """Where a segment stopped making sense, and what was cut."""

    segment: int
    offset: int
    problem: str
    cut_bytes: int


class SegmentLog:
    """Append-only segments in ``directory``; the newest one takes writes."""

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.numbers = sorted(
            int(p.name.removesuffix(SUFFIX))
            for p in directory.glob(f"*{SUFFIX}")
            if p.name.removesuffix(SUFFIX).isdigit()
        )
        self.sizes = {n: self._path(n).stat().st_size for n in self.numbers}
        self._fd: int | None = None
        # What reading found damaged and cut, segment by segment.
        self.damage: list[Damage] = []

    def _path(self, number: int) -> Path:
        return self.directory / segment_name(number)

    @property
    def head(self) -> int:
        """The segment that takes writes (0 before the first one)."""
        return self.numbers[-1] if self.numbers else 0

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def read(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Each segment's records, oldest first. A damaged or torn tail is cut off the file
        (reported through ``damage``); the segments after it are still read."""
        self.damage = []
        for number in list(self.numbers):
            data = self._path(number).read_bytes()
            scan = frames.decode_all(data)
            if scan.problem is not None:
                cut = len(data) - scan.valid_end
                self.damage.append(Damage(number, scan.valid_end, scan.problem, cut))
                log.warning(
                    "storage segment %s: %s at byte %d; cut %d bytes",
                    segment_name(number),
                    scan.problem,
                    scan.valid_end,
                    cut,
                )
                os.truncate(self._path(number), scan.valid_end)
                self.sizes[number] = scan.valid_end
            yield number, scan.records

    def append(self, data: bytes) -> int:
        """Write ``data`` (whole frames) to the head segment, starting a new one when the head
        is full; returns the segment written to. Not synced: see ``sync``."""
        if self._fd is None or self.sizes[self.head] >= self.segment_bytes:
            self.roll()
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            self._abandon_head()
            raise
        self.sizes[self.head] += len(data)
        return self.head

    def _abandon_head(self) -> None:
        """A write failed part way (a full disk): cut the partial frame off, or failing that
        leave it for the next read to cut, and write on in a new segment."""
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            os.ftruncate(fd, self.sizes[self.head])
        except OSError:
            pass
        finally:
            os.close(fd)

    def roll(self) -> int:
        """Start writing to a new segment (compaction writes to one that nothing older
        follows); returns its number."""
        self.close()
        number = self.head + 1
        self._fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.numbers.append(number)
        self.sizes[number] = 0
        self._sync_directory()
        return number

    def sync(self) -> None:
        """Everything appended so far on stable storage."""
        if self._fd is not None:
            os.fsync(self._fd)

    def delete_before(self, number: int) -> int:
        """Delete every segment older than ``number``; returns the bytes freed."""
        freed = 0
        for old in [n for n in self.numbers if n < number]:
            self._path(old).unlink(missing_ok=True)
            freed += self.sizes.pop(old)
            self.numbers.remove(old)
        if freed:
            self._sync_directory()
        return freed

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
