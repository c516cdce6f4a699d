"""The benchmark scenarios run and print their figures (smoke tests: never judged on a figure)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from skyrelay.testing.postgres import server_bin

pytestmark = pytest.mark.timeout(300)


def bench(*args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-results-") as results:
        return _bench(results, *args)


def _bench(results: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "skyrelay", "bench", *args],
        env={**os.environ, "SKYRELAY_BENCH_RESULTS": results},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_fanout_quick_measures_skyrelay_and_the_python_peer() -> None:
    out = bench("fanout", "--quick")
    assert "deliveries/s" in out
    assert "skyrelay-protobuf" in out and "socketio" in out


def test_connections_quick_reports_memory_per_connection() -> None:
    out = bench("connections", "--quick")
    assert "KiB/conn" in out and "connect/s" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for target in ("skyrelay", "skyrelay-protobuf", "skyrelay+deflate", "socketio"):
        assert rows[target][1] == "300", out
    assert "warning" not in out, out


def test_ring_reports_lookup_cost_and_moved_fraction() -> None:
    out = bench("ring")
    assert "lookup, cached" in out and "primaries moved" in out


def test_channels_quick_delivers_to_every_subscription() -> None:
    out = bench("channels", "--quick")
    assert "400 publications, 800 deliveries" in out  # nothing lost at saturation
    assert "p99" in out


def test_fanout_quick_with_two_edge_workers() -> None:
    out = bench("fanout", "--quick", "--workers", "2", "--peers", "none")
    assert "skyrelay-2w" in out and "deliveries/s" in out


def test_soak_quick_loses_no_acked_publication_across_a_shard_kill() -> None:
    out = bench("soak", "--quick")
    assert "1 shard kills" in out
    lost = next(line for line in out.splitlines() if "acked lost" in line)
    assert lost.split()[-1] == "0", out
    assert "duplicates" in out and "growth" in out


def test_durability_quick_measures_every_level_restart_and_disk_use() -> None:
    out = bench("durability", "--quick")
    for level in ("memory", "disk", "fsync"):
        assert any(line.startswith(level) for line in out.splitlines()), out
    assert "restart: a shard holding 200 channels" in out and "disk use:" in out


def test_storage_compares_the_log_with_sqlite() -> None:
    out = bench("storage", "--publications", "4000")
    assert "segment log" in out and "sqlite wal" in out


def test_wire_quick_rebuilds_every_version_in_every_mode() -> None:
    out = bench("wire", "--quick")
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines() if line.strip()}
    for fmt in ("json", "protobuf"):
        for mode in ("none", "deflate", "delta", "delta+deflate"):
            assert (fmt, mode) in rows, out
        # Delta and deflate together carry a small share of the document.
        assert float(rows[(fmt, "delta+deflate")][3].rstrip("%")) < 20, out
    assert "patch" in out and "deflate" in out


def test_backend_quick_measures_the_proxy_and_the_outbox_beside_the_direct_paths() -> None:
    if server_bin() is None and os.environ.get("CI") != "true":
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    out = bench("backend", "--quick")
    assert "through the connect proxy" in out and "from the PostgreSQL outbox" in out
