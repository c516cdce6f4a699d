"""Real clusters on free loopback ports, started the way `skyrelay up` starts them."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cent import AsyncClient

from skyrelay.testing.cluster import ClusterSpec, ClusterTls, LocalCluster
from skyrelay.tokens import mint_token

TOKEN_SECRET = "integration-token-secret-" + "0123456789abcdef" * 4
API_KEY = "integration-api-key"

# Namespaces the tests use besides the default one.
TEST_NAMESPACES = """
[health]
interval = 0.2
timeout = 0.3
fall = 2
rise = 2

[namespaces.fo]
history_size = 2000
history_ttl = 600

[namespaces.slug]
channel_regex = "[a-z0-9-]{1,32}"

[namespaces.short]
history_size = 5
history_ttl = 300
allow_publish = "client"
allow_history = "client"

[namespaces.tokened]
require_subscription_token = true

[namespaces.closed]
allow_subscribe = "none"

[namespaces.room]
presence = true
join_leave = true
force_push_join_leave = true
allow_presence = "client"

[namespaces.brief]
history_size = 10
history_ttl = 1
force_recovery = true

[namespaces.dm]
allow_subscribe = "none"
allow_user_limited_channels = true
"""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_spec(
    origins: int = 3,
    edges: int = 2,
    replication: int = 3,
    edge_toml: str = "",
    extra: str = "",
    tls: ClusterTls | None = None,
    edge_workers: int = 1,
    data_dir: str = "",
    durability: str = "",
    origin_toml: str = "",
) -> ClusterSpec:
    """A spec whose edge and origin ports are all free right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        spec = ClusterSpec(
            origins,
            edges,
            replication,
            base,
            extra_toml=TEST_NAMESPACES + extra,
            edge_toml=edge_toml,
            tls=tls,
            edge_workers=edge_workers,
            data_dir=data_dir,
            durability=durability,
            origin_toml=origin_toml,
        )
        ports = [spec.edge_port(i) for i in range(edges)]
        ports += [spec.origin_port(i) for i in range(origins)]
        if all(_port_free(p) for p in ports):
            return spec
    raise RuntimeError("no free port range found")


def start_cluster(workdir: Path, **kwargs: Any) -> LocalCluster:
    for attempt in range(3):
        cluster = LocalCluster(
            free_spec(**kwargs), workdir, TOKEN_SECRET, API_KEY, log_dir=workdir / "logs"
        )
        try:
            cluster.start()
        except RuntimeError:
            if attempt == 2:
                raise
            continue  # a port was taken between the check and the bind
        return cluster
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def token(user: str = "alice", ttl: float | None = 3600, **extra: object) -> str:
    return mint_token(TOKEN_SECRET, user, now=time.time(), ttl=ttl, extra=dict(extra) or None)


@contextlib.asynccontextmanager
async def api_client(cluster: LocalCluster, edge: int = 1) -> AsyncIterator[AsyncClient]:
    """The server API through one edge, with the real `cent` client."""
    client = AsyncClient(f"{cluster.edge_url(edge)}/api", API_KEY)
    try:
        yield client
    finally:
        await client._session.close()


@pytest.fixture
async def api(cluster: LocalCluster) -> AsyncIterator[AsyncClient]:
    """The server API through edge 1, with the real `cent` client."""
    async with api_client(cluster) as client:
        yield client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s
