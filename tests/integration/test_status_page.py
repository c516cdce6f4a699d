"""The edge's status page: behind the API key or an admin token, and live in a real browser
(headless Chromium): a killed shard shows down without a reload."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from skyrelay.tokens import mint_token
from tests.integration.conftest import API_KEY, TOKEN_SECRET, start_cluster, token
from tests.support.browser import Browser

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("status"), origins=3, edges=1, replication=2)
    yield c
    c.stop()


def admin_token() -> str:
    return mint_token(TOKEN_SECRET, "ops", now=time.time(), ttl=600, extra={"admin": True})


async def test_status_needs_the_api_key_or_an_admin_token(
    watched: LocalCluster, session: aiohttp.ClientSession
) -> None:
    url = watched.edge_url(0)
    async with session.get(f"{url}/status") as resp:  # the page itself holds no data
        assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    for headers in (
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Bearer {token('alice')}"},  # a client token is no admin token
        {"Cookie": "skyrelay_status=9999999999.forged"},
    ):
        async with session.get(f"{url}/status/data", headers=headers) as resp:
            assert resp.status == 401
            assert "API key" in (await resp.json())["error"]["message"]
    async with session.get(f"{url}/status/data", headers={"X-API-Key": API_KEY}) as resp:
        snapshot = await resp.json()
    assert [s["id"] for s in snapshot["shards"]] == ["o0", "o1", "o2"]
    assert all(s["reachable"] and s["health"] == "up" for s in snapshot["shards"])
    bearer = {"Authorization": f"Bearer {admin_token()}"}
    async with session.get(f"{url}/status/data", headers=bearer) as resp:
        assert resp.status == 200
    # Login trades the credential for a signed cookie, which the live stream accepts.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser_like:
        async with browser_like.post(f"{url}/status/login", headers=bearer) as resp:
            assert resp.status == 204
            cookie = resp.cookies["skyrelay_status"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with browser_like.get(f"{url}/status/events") as resp:
            assert resp.status == 200
            line = await resp.content.readline()
            while not line.startswith(b"data: "):
                line = await resp.content.readline()
            assert b'"shards"' in line


async def test_status_page_shows_a_killed_shard_down_live(
    watched: LocalCluster, tmp_path: Path
) -> None:
    browser = await Browser.launch()
    try:
        await browser.goto(f"{watched.edge_url(0)}/status#key={API_KEY}")
        rows = "document.querySelectorAll('tr[data-shard]')"
        await browser.wait_for(
            f"{rows}.length === 3 && [...{rows}].every(r => r.dataset.health === 'up')"
        )
        # The credential left the address bar once it was traded for a cookie.
        assert "#key" not in await browser.evaluate("location.href")
        await browser.evaluate("window.sameDocument = true")
        watched.signal("o1", signal.SIGKILL)
        await browser.wait_for(
            "document.querySelector('tr[data-shard=\"o1\"]').dataset.health === 'down'"
        )
        assert await browser.evaluate("window.sameDocument === true")  # no reload
        # A shard down is a failover, not an outage: the edge stays ready for new clients.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{watched.edge_url(0)}/ready") as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["shards_down"] == ["o1"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{watched.edge_url(0)}/metrics") as resp,
        ):
            text = await resp.text()
        assert 'skyrelay_edge_shard_health_changes_total{shard="o1",state="down"} 1.0' in text
        up = await browser.evaluate(
            "[...document.querySelectorAll('tr[data-health=\"up\"]')].map(r => r.dataset.shard)"
        )
        assert up == ["o0", "o2"]
        await browser.wait_for("document.getElementById('events').textContent.includes('o1')")
        shot = tmp_path / "status.png"
        shot.write_bytes(await browser.screenshot())
        assert shot.stat().st_size > 10_000
    finally:
        await browser.close()
