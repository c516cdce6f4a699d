"""The `skyrelay` command: `up` starts and stops a whole cluster, and the small tools."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from skyrelay.testing.cluster import ClusterSpec, render_config
from tests.integration.conftest import free_spec

SKYRELAY = [sys.executable, "-m", "skyrelay"]


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_starts_the_contract_cluster_and_stops_it_without_orphans(
    tmp_path: Path, sig: signal.Signals
) -> None:
    spec = free_spec()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYRELAY_")}
    log = open(tmp_path / "up.err", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*SKYRELAY, "up", "--port", str(spec.port)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl+C" in line:
                break
        out = "".join(lines)
        assert "Press Ctrl+C" in out, out + (tmp_path / "up.err").read_text()
        for port in (spec.port, spec.port + 1):
            assert f"ws://127.0.0.1:{port}/connection/websocket" in out
        for port in (spec.port + 100, spec.port + 101, spec.port + 102):
            assert f"http://127.0.0.1:{port}" in out
        secret = re.search(r"SKYRELAY_TOKEN_SECRET=(\S+) \(generated\)", out)
        assert secret is not None
        assert re.search(r"SKYRELAY_API_KEY=\S+", out)
        demo = re.search(r"demo token \(user demo, 24 h\): (\S+)", out)
        assert demo is not None
        claims = jwt.decode(demo.group(1), secret.group(1), algorithms=["HS256"])
        assert claims["sub"] == "demo"

        kids = children_of(proc.pid)
        assert len(kids) == 5  # 3 origins + 2 edges
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in kids))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_token_command_mints_a_verifiable_token() -> None:
    secret = "cli-secret-" + "x" * 40
    out = subprocess.run(
        [*SKYRELAY, "token", "--sub", "carol", "--ttl", "60"],
        env={**os.environ, "SKYRELAY_TOKEN_SECRET": secret},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(out, secret, algorithms=["HS256"])
    assert claims["sub"] == "carol" and "admin" not in claims
    assert 0 < claims["exp"] - time.time() <= 61
    admin = subprocess.run(
        [*SKYRELAY, "token", "--sub", "ops", "--admin"],
        env={**os.environ, "SKYRELAY_TOKEN_SECRET": secret},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert jwt.decode(admin, secret, algorithms=["HS256"])["admin"] is True


def test_token_command_without_secret_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SKYRELAY_TOKEN_SECRET"}
    done = subprocess.run(
        [*SKYRELAY, "token", "--sub", "x"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "SKYRELAY_TOKEN_SECRET" in done.stderr


def test_ring_show_and_plan(tmp_path: Path) -> None:
    config = tmp_path / "ring.toml"
    config.write_text(render_config(ClusterSpec()))
    show = subprocess.run(
        [*SKYRELAY, "ring", "show", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(f"o{i}" in show for i in range(3))
    plan = subprocess.run(
        [*SKYRELAY, "ring", "plan", "--config", str(config), "--add", "o3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sample channels change primary" in plan


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(render_config(ClusterSpec()) + "\n[origin]\nlisten_backlog = -5\n")
    done = subprocess.run(
        [*SKYRELAY, "origin", "--config", str(config), "--id", "o0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "origin.listen_backlog" in done.stderr
    assert "Traceback" not in done.stderr
