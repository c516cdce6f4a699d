"""Shards that keep their channels on disk: a whole-tier crash under load loses nothing acked,
and a data directory that is not the shard's is refused at start.

Each test runs its own cluster (3 shards, replication 3, 2 edges) with data on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster
from tests.support.helpers import until
from tests.support.load import (
    Acks,
    check_deliveries,
    history,
    publish,
    publish_steadily,
    subscribed_recorders,
)

pytestmark = pytest.mark.timeout(240)

CHANNELS = [f"fo:d{i}" for i in range(10)]


def durable_cluster(tmp_path: Path, durability: str) -> LocalCluster:
    return start_cluster(
        tmp_path, data_dir=str(tmp_path / "data" / "{shard}"), durability=durability
    )


@pytest.mark.parametrize("durability", ["disk", "fsync"])
async def test_a_whole_tier_crash_under_load_loses_nothing_acked(
    tmp_path: Path, session: aiohttp.ClientSession, durability: str
) -> None:
    cluster = durable_cluster(tmp_path, durability)
    try:
        recorders = await subscribed_recorders(session, cluster, CHANNELS)
        acks = Acks()
        epochs: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 90
        stop = asyncio.Event()

        tasks = publish_steadily(
            session, cluster, CHANNELS, acks, epochs, stop=stop, give_up=give_up, pause=0.02
        )
        await until(lambda: all(len(acks.acked.get(ch, {})) >= 20 for ch in CHANNELS), 30)
        for i in range(cluster.spec.origins):  # a power cut: every shard at once
            cluster.signal(f"o{i}", signal.SIGKILL)
        for i in range(cluster.spec.origins):
            cluster.processes[f"o{i}"].wait(10)
        before = {ch: len(acks.acked.get(ch, {})) for ch in CHANNELS}
        for i in range(cluster.spec.origins):
            cluster.restart(f"o{i}")
        await until(
            lambda: all(len(acks.acked[ch]) >= before[ch] + 10 for ch in CHANNELS),
            60,
            "publishing to go on after the restart",
        )
        stop.set()
        await asyncio.gather(*tasks)

        assert not acks.other_errors
        assert all(len(seen) == 1 for seen in epochs.values()), epochs  # no new epoch
        api = f"{cluster.edge_url(0)}/api"
        for ch in CHANNELS:
            kept = await history(session, api, ch)
            by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
            assert kept["epoch"] in epochs[ch]
            missing = {o: d for o, d in acks.acked[ch].items() if by_offset.get(o) != d}
            assert missing == {}, f"{ch}: acked but not in history: {missing}"
        await until(lambda: all(r.has_all(acks) for r in recorders), 30, "deliveries")
        for recorder in recorders:
            check_deliveries(recorder, acks)  # no gap, no duplicate, in order
            assert recorder.unsubscribed == []
            await recorder.close()
    finally:
        cluster.stop()


def test_a_data_dir_of_another_shard_is_refused_at_start(tmp_path: Path) -> None:
    cluster = durable_cluster(tmp_path, "disk")
    cluster.stop()
    o0, o1 = tmp_path / "data" / "o0", tmp_path / "data" / "o1"
    o1.rename(tmp_path / "data" / "o1-old")
    o0.rename(o1)  # o1 now starts on o0's data
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyrelay",
            "origin",
            "--config",
            str(cluster.config_path),
            "--id",
            "o1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "config error: origin.data_dir:" in result.stderr
    assert "written by shard 'o0', not 'o1'" in result.stderr


@pytest.mark.parametrize("durability", ["memory", "disk"])
async def test_a_rolling_restart_that_waits_for_ready_loses_nothing(
    tmp_path: Path, session: aiohttp.ClientSession, durability: str
) -> None:
    cluster = durable_cluster(tmp_path, durability)
    try:
        recorders = await subscribed_recorders(session, cluster, CHANNELS)
        acks = Acks()
        epochs: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
        give_up = asyncio.get_running_loop().time() + 150
        stop = asyncio.Event()

        tasks = publish_steadily(
            session, cluster, CHANNELS, acks, epochs, stop=stop, give_up=give_up, pause=0.02
        )
        await until(lambda: all(len(acks.acked.get(ch, {})) >= 10 for ch in CHANNELS), 30)
        for _ in range(2):
            for i in range(cluster.spec.origins):
                name = f"o{i}"
                cluster.signal(name, signal.SIGTERM)
                assert await asyncio.to_thread(cluster.processes[name].wait, 30) == 0
                await asyncio.to_thread(cluster.restart, name)  # returns once /ready is 200
        count = sum(len(a) for a in acks.acked.values())
        await until(lambda: sum(len(a) for a in acks.acked.values()) >= count + 50, 30)
        stop.set()
        await asyncio.gather(*tasks)

        assert not acks.other_errors
        assert all(len(seen) == 1 for seen in epochs.values()), epochs
        for ch in CHANNELS:
            kept = await history(session, f"{cluster.edge_url(0)}/api", ch)
            by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
            missing = {o: d for o, d in acks.acked[ch].items() if by_offset.get(o) != d}
            assert missing == {}, f"{ch}: acked but not in history: {missing}"
        await until(lambda: all(r.has_all(acks) for r in recorders), 30, "deliveries")
        for recorder in recorders:
            check_deliveries(recorder, acks)
            assert recorder.unsubscribed == []
            await recorder.close()
    finally:
        cluster.stop()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_refuses_publishes_until_space_returns(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    with small_filesystem(tmp_path / "small", "1m") as disk:
        cluster = start_cluster(
            tmp_path / "run",
            origins=1,
            edges=1,
            replication=1,
            data_dir=str(disk / "{shard}"),
            origin_toml="storage_segment_bytes = 65536",
        )
        try:
            api = f"{cluster.edge_url(0)}/api"
            acks = Acks()
            give_up = asyncio.get_running_loop().time() + 60
            filler = disk / "filler"
            await asyncio.to_thread(fill_until_full, filler)
            refused = None
            for n in range(200):  # the disk is nearly full: publishes soon fail
                body = {"channel": "fo:full", "data": {"n": n, "pad": "x" * 2000}}
                async with session.post(
                    f"{api}/publish", data=orjson.dumps(body), headers={"X-API-Key": API_KEY}
                ) as resp:
                    answer = await resp.json()
                if "error" in answer:
                    refused = answer["error"]
                    break
                acks.acked.setdefault("fo:full", {})[answer["result"]["offset"]] = body["data"]
            assert refused is not None and refused["temporary"], refused
            log = tmp_path / "run" / "logs" / "o0.log"
            assert "storage write failed: No space left on device" in log.read_text()

            filler.unlink()  # space returns: the shard writes again by itself
            data = {"n": "after", "pad": "y"}
            result = await publish(session, api, "fo:full", data, "after", acks, give_up)
            assert result is not None, acks.other_errors
            assert "storage writes succeed again" in log.read_text()

            cluster.signal("o0", signal.SIGKILL)  # what was acked was written
            cluster.processes["o0"].wait(10)
            cluster.restart("o0")
            kept = await history(session, api, "fo:full")
            by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
            assert {o: by_offset.get(o) for o in acks.acked["fo:full"]} == acks.acked["fo:full"]
        finally:
            cluster.stop()


def fill_until_full(path: Path) -> None:
    """Write ``path`` until the filesystem is full, then give back a little room."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(path, max(0, path.stat().st_size - 96 * 1024))


def damage_log(directory: Path) -> None:
    """Tear the newest segment's last frame and flip a byte in the middle of the oldest one
    (the same one in a short run: the flip cuts the tear away)."""
    segments = sorted(directory.glob("*.log"))
    newest = segments[-1]
    os.truncate(newest, max(0, newest.stat().st_size - 5))
    first = bytearray(segments[0].read_bytes())
    first[len(first) // 2] ^= 0xFF
    segments[0].write_bytes(bytes(first))


async def test_a_damaged_log_is_cut_and_the_shard_resyncs_before_it_counts(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    cluster = durable_cluster(tmp_path, "disk")
    try:
        api = f"{cluster.edge_url(0)}/api"
        acks = Acks()
        give_up = asyncio.get_running_loop().time() + 60
        for n in range(40):
            for ch in CHANNELS:
                assert await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, give_up)
        cluster.signal("o1", signal.SIGKILL)
        await asyncio.to_thread(cluster.processes["o1"].wait, 10)
        await asyncio.to_thread(damage_log, tmp_path / "data" / "o1")
        await asyncio.to_thread(cluster.restart, "o1")  # back once its copies are current
        log = (tmp_path / "logs" / "o1.log").read_text()
        assert "damaged frame: checksum mismatch" in log  # cut there, and said
        assert "count only once a leader syncs them" in log
        # The two other shards go, one after the other: o1's copies must now hold it all.
        for other in ("o0", "o2"):
            cluster.signal(other, signal.SIGKILL)
            await asyncio.to_thread(cluster.processes[other].wait, 10)
            await asyncio.to_thread(cluster.restart, other)
        for ch in CHANNELS:
            kept = await history(session, api, ch)
            by_offset = {p["offset"]: p["data"] for p in kept["publications"]}
            assert {o: by_offset.get(o) for o in acks.acked[ch]} == acks.acked[ch]
    finally:
        cluster.stop()
