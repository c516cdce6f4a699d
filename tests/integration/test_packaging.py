"""What ``pip install .`` puts in site-packages: one top-level import package, ``skyrelay``,
with the edge, origin, ring and benchmarks folders inside it, and a CLI that runs from there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(out), str(ROOT)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("skyrelay-*.whl")
    return wheel


def test_the_wheel_installs_one_package_and_its_cli_runs_from_it(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"skyrelay"}
    for inside in ("edge/hub.py", "origin/shard.py", "ring/hashring.py", "benchmarks/__init__.py"):
        assert f"skyrelay/{inside}" in names
    assert "skyrelay/edge/static/status.html" in names

    site = tmp_path / "site"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [sys.executable, "-c", "import skyrelay.edge.app as m; print(m.__file__)"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(site))
    for args in (["--help"], ["token", "--sub", "alice", "--ttl", "60"], ["ring", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "skyrelay", *args],
            check=False,
            cwd=tmp_path,
            env={**env, "SKYRELAY_TOKEN_SECRET": "packaging-test-secret-" + "0" * 32},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (args, done.stderr)
