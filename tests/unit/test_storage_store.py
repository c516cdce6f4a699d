"""The shard store on a real directory: group commit, reload, damage, compaction and a failing
disk (injected at the segment log: a real full disk is in tests/integration)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from skyrelay.config import ConfigError
from skyrelay.origin.storage.identity import claim_directory
from skyrelay.origin.storage.store import SEGMENTS_KEPT, Batch, ShardStore
from tests.support.helpers import until


def pub(offset: int) -> dict[str, Any]:
    return {
        "offset": offset,
        "data": {"n": offset, "pad": "x" * 200},
        "time": int(time.time() * 1000),
    }


def snap(top: int, pubs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"epoch": "e1", "top": top, "committed": top, "pubs": pubs}


async def resolved(store: ShardStore, marker: int) -> None:
    await until(lambda: store.resolved >= marker, what=f"write {marker} to resolve")


def cut_tail(directory: Path, size: int) -> None:
    segment = next(directory.glob("*.log"))
    with segment.open("r+b") as f:
        f.truncate(segment.stat().st_size - size)


def flip_middle_of_first_segment(directory: Path) -> None:
    first = sorted(directory.glob("*.log"))[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))


def reopen(path: Path, keep: int = 100) -> tuple[ShardStore, Any]:
    store = ShardStore(path, fsync=False, segment_bytes=1 << 16)
    return store, store.load(lambda _: keep, lambda _: 300.0, time.time())


@pytest.mark.parametrize("fsync", [False, True])
async def test_writes_of_one_turn_resolve_together_and_reload(tmp_path: Path, fsync: bool) -> None:
    store = ShardStore(tmp_path, fsync=fsync, segment_bytes=1 << 20)
    batches: list[Batch] = []
    store.listeners.append(batches.append)
    first = store.save_state("a", snap(0, []), 3)
    markers = [store.save_publications("a", 3, [pub(n)], n - 1) for n in range(1, 6)]
    other = store.save_state("b", snap(1, [pub(1)]), 4)
    await resolved(store, other)
    assert [b.last for b in batches] == [other] and batches[0].ok
    assert batches[0].channels == {"a", "b"} and first < markers[0]
    assert store.stats.batches == 1 and store.stats.records == 3  # a's five appends merged
    await store.close()
    again, loaded = reopen(tmp_path)
    assert loaded.images["a"].top == 5 and loaded.images["a"].accepted_term == 3
    assert [p["offset"] for p in loaded.images["b"].pubs] == [1]
    assert not again.damaged


async def test_a_torn_tail_is_cut_logged_and_writing_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ShardStore(tmp_path, fsync=False, segment_bytes=1 << 20)
    await resolved(store, store.save_state("a", snap(2, [pub(1), pub(2)]), 1))
    await resolved(store, store.save_publications("a", 1, [pub(3)], 3))
    await store.close()
    cut_tail(tmp_path, 7)  # the process died in the middle of the last write
    with caplog.at_level(logging.WARNING):
        again, loaded = reopen(tmp_path)
    assert "torn tail" in caplog.text and again.damaged
    assert loaded.images["a"].top == 2  # the cut write is gone, nothing else
    await resolved(again, again.save_publications("a", 1, [pub(3)], 3))
    await again.close()
    third, loaded = reopen(tmp_path)
    assert loaded.images["a"].top == 3 and not third.damaged


async def test_flipped_bytes_cut_that_segment_and_later_ones_still_count(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, fsync=False, segment_bytes=1 << 16)
    for n in range(1, 400):  # enough to fill several segments
        store.save_state(f"c{n % 7}", snap(n, [pub(n)]), n)
        await asyncio.sleep(0)
    await store.close()
    flip_middle_of_first_segment(tmp_path)
    again, loaded = reopen(tmp_path)
    assert again.damaged and again.log.damage[0].problem.startswith("damaged frame")
    # The newest state of each channel is in later segments: all of them survive.
    assert sorted(image.top for image in loaded.images.values()) == list(range(393, 400))


async def test_compaction_keeps_the_log_to_a_few_segments(tmp_path: Path) -> None:
    copies: dict[str, tuple[dict[str, Any], int]] = {}
    store = ShardStore(tmp_path, fsync=False, segment_bytes=1 << 16)
    store.snapshots = copies.get
    for n in range(1, 3000):
        channel = f"c{n % 5}"
        base = copies.get(channel, (snap(0, []), 1))[0]
        pubs = [*base["pubs"], pub(base["top"] + 1)][-10:]  # a history of 10
        copies[channel] = (snap(base["top"] + 1, pubs), 1)
        if base["top"] == 0:
            store.save_state(channel, copies[channel][0], 1)
        else:
            store.save_publications(channel, 1, [pubs[-1]], base["top"] + 1)
        if n % 50 == 0:
            await asyncio.sleep(0.001)
    await store.close()
    assert store.stats.compactions >= 5
    assert len(store.log.numbers) <= SEGMENTS_KEPT + 2
    assert store.log.total_bytes <= (SEGMENTS_KEPT + 2) * (1 << 16)
    _, loaded = reopen(tmp_path, keep=10)
    assert {ch: image.top for ch, image in loaded.images.items()} == {
        ch: copy[0]["top"] for ch, copy in copies.items()
    }


async def test_a_failed_write_fails_its_markers_and_the_next_one_heals_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ShardStore(tmp_path, fsync=False, segment_bytes=1 << 20)
    copy = snap(1, [pub(1)])
    store.snapshots = lambda ch: (copy, 2) if ch == "a" else None
    await resolved(store, store.save_state("a", copy, 2))
    real_append = store.log.append

    def full(_: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.log, "append", full)
    lost = store.save_publications("a", 2, [pub(2)], 1)
    await resolved(store, lost)
    assert store.failed(lost) and store.failing is not None
    monkeypatch.setattr(store.log, "append", real_append)
    copy = snap(3, [pub(1), pub(2), pub(3)])  # memory went on without the disk
    healed = store.save_publications("a", 2, [pub(3)], 3)
    await resolved(store, healed)
    assert not store.failed(healed) and store.failing is None
    await store.close()
    _, loaded = reopen(tmp_path)
    assert [p["offset"] for p in loaded.images["a"].pubs] == [1, 2, 3]


def test_a_directory_is_refused_for_another_cluster_or_shard_or_while_in_use(
    tmp_path: Path,
) -> None:
    lock = claim_directory(tmp_path, "prod", "o1", "origin.data_dir")
    with pytest.raises(ConfigError, match="in use by another process"):
        claim_directory(tmp_path, "prod", "o1", "origin.data_dir")
    os.close(lock)
    with pytest.raises(ConfigError, match=r"origin\.data_dir: .* written by cluster 'prod'"):
        claim_directory(tmp_path, "staging", "o1", "origin.data_dir")
    with pytest.raises(ConfigError, match="written by shard 'o1', not 'o2'"):
        claim_directory(tmp_path, "prod", "o2", "origin.data_dir")
