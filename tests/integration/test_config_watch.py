"""A config file that changes in place (a Kubernetes ConfigMap) is applied without a SIGHUP
by processes that watch it (``config_watch_interval``); a broken one is refused and the
running config kept."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import until
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def watching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("watch"), origins=1, edges=1, replication=1)
    cluster.spec = dataclasses.replace(cluster.spec, top_toml="config_watch_interval = 0.2")
    cluster.write_config()  # read at the next start: restart both with it
    for name in ("o0", "e0"):
        cluster.processes[name].terminate()
        cluster.processes[name].wait(30)
        cluster.restart(name)
    yield cluster
    cluster.stop()


async def publish(session: aiohttp.ClientSession, cluster: LocalCluster, ch: str) -> dict:
    async with session.post(
        f"{cluster.edge_url(0)}/api/publish",
        json={"channel": ch, "data": {"n": 1}},
        headers={"X-API-Key": API_KEY},
    ) as response:
        return await response.json()  # type: ignore[no-any-return]


async def test_a_changed_config_file_is_applied_without_a_signal(
    watching: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, _ = await connect_raw(session, watching.ws_url(0), token("watcher"))
    refused = await raw.command("subscribe", {"channel": "watched:a"})
    assert refused["error"]["code"] == 102
    assert (await publish(session, watching, "watched:a"))["error"]["code"] == 102
    # A broken file is refused; the processes keep serving with the config they run.
    watching.config_path.write_text(watching.config_path.read_text() + "\n[namespaces.x\n")
    assert watching.log_dir is not None
    log = watching.log_dir / "e0.log"
    await until(lambda: "reload failed" in log.read_text(), 10, "the broken file refused")
    watching.spec = dataclasses.replace(
        watching.spec, extra_toml='[namespaces.watched]\nallow_publish = "client"'
    )
    watching.write_config()
    await until(lambda: log.read_text().count("config file changed") >= 2, 10, "the reload")
    reply = await raw.command("subscribe", {"channel": "watched:a"})
    assert "subscribe" in reply, reply

    # The origin looks at its file on its own schedule.
    deadline = asyncio.get_running_loop().time() + 10
    while "result" not in await publish(session, watching, "watched:a"):
        assert asyncio.get_running_loop().time() < deadline, "the origin kept the old config"
        await asyncio.sleep(0.05)
    await raw.ws.close()
