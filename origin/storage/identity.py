"""Whose data a directory holds: the cluster and shard that wrote it, checked at start-up, and
a lock so that two processes never write one log.

What belongs here: the identity file and the lock. What never does: the log itself.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import orjson

from skyrelay.config import ConfigError

IDENTITY_FILE = "IDENTITY"
LOCK_FILE = "LOCK"
# Bumped when the log's format changes in a way an older reader would misread.
FORMAT = 1


def claim_directory(directory: Path, cluster: str, shard_id: str, key: str) -> int:
    """Create or check ``directory`` for this shard and lock it; returns the lock's fd (held
    for the life of the process). A directory of another cluster, shard or format, or one
    another process holds, is a ``ConfigError`` naming ``key``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot use {directory}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{key}: {directory} is in use by another process") from None
    try:
        _check_or_write(directory, cluster, shard_id, key)
    except ConfigError:
        os.close(fd)
        raise
    return fd


def _check_or_write(directory: Path, cluster: str, shard_id: str, key: str) -> None:
    path = directory / IDENTITY_FILE
    mine = {"cluster": cluster, "shard": shard_id, "format": FORMAT}
    if not path.exists():
        if any(p.name.endswith(".log") for p in directory.iterdir()):
            raise ConfigError(f"{key}: {directory} holds a log without an identity file")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(mine))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.rename(path)
        return
    try:
        found = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        raise ConfigError(f"{key}: {path} is not an identity file") from None
    if not isinstance(found, dict):
        raise ConfigError(f"{key}: {path} is not an identity file")
    if found.get("cluster") != cluster:
        raise ConfigError(
            f"{key}: {directory} was written by cluster {found.get('cluster')!r}, not {cluster!r}"
        )
    if found.get("shard") != shard_id:
        raise ConfigError(
            f"{key}: {directory} was written by shard {found.get('shard')!r}, not {shard_id!r}"
        )
    if found.get("format") != FORMAT:
        raise ConfigError(f"{key}: {directory} has storage format {found.get('format')!r}")
