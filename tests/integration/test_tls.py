"""TLS on edges and origins: a real cluster whose every port speaks TLS only, with a CA and
certificates made in the test. Clients that trust the CA get through; others fail the
handshake; links between processes verify the shards' certificates."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from skyrelay.link import wire
from skyrelay.testing.cluster import ClusterTls, LocalCluster
from tests.integration.conftest import API_KEY, TOKEN_SECRET, free_spec, start_cluster, token
from tests.support.helpers import channel
from tests.support.tlsfiles import make_ca, make_server_cert
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterTls:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    files = make_server_cert(ca, directory, "host")
    return ClusterTls(str(ca.path), str(files.cert), str(files.key))


@pytest.fixture(scope="module")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, pki: ClusterTls
) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("tls-cluster"), tls=pki)
    yield cluster
    cluster.stop()


@pytest.fixture
async def trusting(pki: ClusterTls) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that trusts the cluster's CA."""
    context = ssl.create_default_context(cafile=pki.ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s:
        yield s


async def test_wss_subscriber_gets_what_the_https_api_publishes_through_tls_origins(
    tls_cluster: LocalCluster, trusting: aiohttp.ClientSession
) -> None:
    assert tls_cluster.ws_url(0).startswith("wss://")
    ch = channel()
    client, reply = await connect_raw(trusting, tls_cluster.ws_url(0), token("alice"))
    assert "connect" in reply, reply
    assert "subscribe" in await client.command("subscribe", {"channel": ch})
    # Published on edge 1, delivered on edge 0: edge 1 -> leader -> edge 0, every link TLS.
    for n in range(3):
        async with trusting.post(
            f"{tls_cluster.edge_url(1)}/api/publish",
            json={"channel": ch, "data": {"n": n}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            answer = await resp.json()
        assert answer["result"]["offset"] == n + 1, answer
    pushes = await client.wait_pushes(3)
    assert [p["pub"]["data"] for p in pushes] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [p["pub"]["offset"] for p in pushes] == [1, 2, 3]
    await client.ws.close()


async def test_every_port_speaks_tls_only(
    tls_cluster: LocalCluster, trusting: aiohttp.ClientSession
) -> None:
    for i in range(tls_cluster.spec.origins):
        async with trusting.get(f"{tls_cluster.origin_url(i)}/ready") as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as plain:
        for url in (tls_cluster.edge_url(0), tls_cluster.origin_url(0)):
            plain_url = url.replace("https://", "http://") + "/health"
            with pytest.raises((aiohttp.ClientError, TimeoutError)):  # never an answer
                async with plain.get(plain_url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    await resp.read()


async def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    stranger = make_ca(tmp_path, "Some other CA")
    contexts = [
        ssl.create_default_context(),  # the system's trust store
        ssl.create_default_context(cafile=str(stranger.path)),
    ]
    for context in contexts:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.ws_connect(tls_cluster.ws_url(0))
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.post(f"{tls_cluster.edge_url(1)}/api/publish", json={})
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(f"{tls_cluster.origin_url(0)}/health")


async def test_a_link_needs_a_client_certificate_of_the_cluster(
    tls_cluster: LocalCluster, trusting: aiohttp.ClientSession, pki: ClusterTls, tmp_path: Path
) -> None:
    """Mutual TLS on the links: without a client certificate the link is refused before
    any request is read (401) and logged; one of another CA fails the handshake; the
    cluster's own opens. Health checks and scrapes need none."""
    origin = tls_cluster.origin_url(0)
    link = f"{origin}{wire.LINK_PATH}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await trusting.ws_connect(link, params={"peer": "no-cert"})
    assert caught.value.status == 401
    assert tls_cluster.log_dir is not None
    log = tls_cluster.log_dir / "o0.log"
    await eventually(
        lambda: asyncio.sleep(0, "refused: no client certificate" in log.read_text()),
        timeout=10,
        what="the refusal logged",
    )
    async with trusting.get(f"{origin}/health") as resp:
        assert resp.status == 200
    other = make_ca(tmp_path / "other", "Other CA")
    stranger = make_server_cert(other, tmp_path / "stranger", "stranger")
    context = ssl.create_default_context(cafile=pki.ca)
    context.load_cert_chain(stranger.cert, stranger.key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s:
        try:
            ws = await s.ws_connect(link, params={"peer": "stranger"})
        except aiohttp.ClientError:
            pass  # refused in the handshake
        else:  # (with TLS 1.3 a refused certificate may show only after it)
            message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), message
    context = ssl.create_default_context(cafile=pki.ca)
    context.load_cert_chain(pki.cert, pki.key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as s:
        ws = await s.ws_connect(link, params={"peer": "member"})
        await ws.close()


async def test_an_edge_refuses_a_shard_its_ca_did_not_sign(tmp_path: Path) -> None:
    """The edge's links and probes verify the shard: with the wrong CA the shard is down
    for it, its /ready says which link is missing, and the log says why."""
    real = make_ca(tmp_path / "real", "Real CA")
    wrong = make_ca(tmp_path / "wrong", "Wrong CA")
    files = make_server_cert(real, tmp_path, "origin")
    spec = free_spec(origins=1, edges=1, replication=1)
    cluster = LocalCluster(spec, tmp_path, TOKEN_SECRET, API_KEY, log_dir=tmp_path / "logs")
    cluster.config_path.write_text(
        f"""
replication = 1

[tls]
ca = "{wrong.path}"

[health]
interval = 0.2
timeout = 0.3
fall = 2
rise = 2

[[shards]]
id = "o0"
url = "https://127.0.0.1:{spec.origin_port(0)}"
tls_cert = "{files.cert}"
tls_key = "{files.key}"

[[edges]]
id = "e0"
host = "127.0.0.1"
port = {spec.edge_port(0)}
"""
    )
    cluster.start_process("o0", ["origin", "--id", "o0"])
    cluster.start_process("e0", ["edge", "--id", "e0"])
    try:
        edge = f"http://127.0.0.1:{spec.edge_port(0)}"
        async with aiohttp.ClientSession() as s:

            async def shard_seen_down() -> bool:
                assert cluster.processes["e0"].poll() is None, "the edge exited"
                try:
                    async with s.get(f"{edge}/metrics") as resp:
                        text = await resp.text()
                except aiohttp.ClientError:
                    return False
                return re.search(r'skyrelay_edge_shard_up\{shard="o0"\} 0', text) is not None

            await eventually(shard_seen_down, timeout=30, what="the edge to see o0 down")
            async with s.get(f"{edge}/ready") as resp:
                assert resp.status == 503
                body = await resp.json()
                assert "o0" in body.get("links_down", []) + body.get("shards_down", [])

        async def logged() -> bool:
            log = (tmp_path / "logs" / "e0.log").read_text()
            return "TLS failed" in log and "CERTIFICATE_VERIFY_FAILED" in log

        await eventually(logged, timeout=30, what="the edge to log why")
    finally:
        cluster.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYRELAY_TOKEN_SECRET": TOKEN_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "skyrelay", args[0], "--config", str(config), *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_missing_certificate_files_stop_the_process_naming_the_key(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, "host")
    config = tmp_path / "skyrelay.toml"
    config.write_text(
        f"""
[[shards]]
id = "o0"
url = "https://127.0.0.1:1"
tls_cert = "{files.cert}"
tls_key = "{tmp_path / "missing.key"}"

[[edges]]
id = "e0"
port = 1
tls_cert = "{tmp_path / "missing.crt"}"
tls_key = "{files.key}"
"""
    )
    origin = _run(config, "origin", "--id", "o0")
    assert origin.returncode == 2
    assert "config error: shards[0].tls_key: cannot read" in origin.stderr
    assert "missing.key" in origin.stderr and "Traceback" not in origin.stderr
    edge = _run(config, "edge", "--id", "e0")
    assert edge.returncode == 2
    assert "config error: edges[0].tls_cert: cannot read" in edge.stderr
    assert "Traceback" not in edge.stderr
