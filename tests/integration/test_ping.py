"""Server pings `{}` on a fixed interval; a client that does not answer is closed with 3012."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import start_cluster, token
from tests.support.wsclient import connect_raw


@pytest.fixture(scope="module")
def fast_ping_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("ping"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml="ping_interval = 2\npong_timeout = 1\nconnect_timeout = 1.5\nexpired_close_delay = 1",
    )
    yield c
    c.stop()


async def test_pinged_client_that_answers_stays_connected(
    fast_ping_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, reply = await connect_raw(session, fast_ping_cluster.ws_url(0), token())
    assert reply["connect"]["ping"] == 2 and reply["connect"]["pong"] is True
    reader = client.wait_pushes(10**6, timeout=5)
    with pytest.raises(TimeoutError):
        await reader  # reads (and answers pings) for 5 s: the connection stays open
    assert client.pings >= 2
    assert client.close_code is None
    assert "subscribe" in await client.command("subscribe", {"channel": "still-here"})
    await client.ws.close()


async def test_client_that_never_pongs_is_closed_with_3012(
    fast_ping_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, _ = await connect_raw(session, fast_ping_cluster.ws_url(0), token())
    client.answer_pings = False
    assert await client.wait_closed(timeout=10) == 3012
    assert client.pings >= 1


async def test_connection_without_connect_is_closed_as_stale(
    fast_ping_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ws = await session.ws_connect(fast_ping_cluster.ws_url(0), autoclose=False)
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 3502
    await ws.close()


async def test_token_expiry_is_enforced_on_open_connections_and_refresh_extends_it(
    fast_ping_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    lapsed, reply = await connect_raw(session, fast_ping_cluster.ws_url(0), token("l", ttl=2))
    assert reply["connect"]["expires"] is True and 1 <= reply["connect"]["ttl"] <= 2
    assert await lapsed.wait_closed(timeout=15) == 3005  # expired, never refreshed

    kept, _ = await connect_raw(session, fast_ping_cluster.ws_url(0), token("r", ttl=2))
    answer = await kept.command("refresh", {"token": token("r", ttl=60)})
    assert answer["refresh"]["expires"] is True and answer["refresh"]["ttl"] > 50
    with pytest.raises(TimeoutError):  # past the first token's expiry and grace: still open
        await kept.wait_pushes(10**6, timeout=6)
    assert kept.close_code is None
    # A token of another user is refused by closing the connection.
    other = token("someone-else", ttl=60)
    await kept.send_raw(json.dumps({"id": 50, "refresh": {"token": other}}))
    assert await kept.wait_closed() == 3500
