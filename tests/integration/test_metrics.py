"""/metrics on an edge and an origin show what traffic did."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("metrics"), origins=1, edges=1, replication=1)
    yield c
    c.stop()


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


async def test_metrics_count_publications_deliveries_and_errors(
    metered: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    edge, origin = metered.edge_url(0), metered.origin_url(0)
    before_edge, before_origin = await scrape(session, edge), await scrape(session, origin)
    clients = []
    for i in range(3):
        client, _ = await connect_raw(session, metered.ws_url(0), token(f"m{i}"))
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
        clients.append(client)
    for n in range(5):
        async with session.post(
            f"{edge}/api/publish",
            json={"channel": ch, "data": {"n": n}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            assert "result" in await resp.json()
    for client in clients:
        await client.wait_pushes(5)
    bad = await clients[0].command("publish", {"channel": "nope:x", "data": {}})
    assert bad["error"]["code"] == 102

    after = await scrape(session, edge)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before_edge.get(name, 0.0)

    assert delta("skyrelay_edge_deliveries_total") == 15
    assert delta("skyrelay_edge_publications_total") == 5
    # Published one at a time, each waited for: batches of one at most five.
    assert 1 <= delta("skyrelay_edge_fanout_batches_total") <= 5
    assert delta('skyrelay_edge_command_errors_total{code="102"}') == 1
    assert delta('skyrelay_edge_api_seconds_count{method="publish"}') == 5
    assert after['skyrelay_edge_connections{transport="websocket"}'] >= 3
    assert delta('skyrelay_edge_subscriptions{transport="websocket"}') == 3
    assert after["skyrelay_edge_connection_limit"] > 0
    # Every publication delivered here was timed from the leader taking it.
    assert delta("skyrelay_edge_deliver_latency_seconds_count") == 5
    assert after['skyrelay_edge_shard_up{shard="o0"}'] == 1
    origin_after = await scrape(session, origin)
    assert (
        origin_after["skyrelay_origin_publications_total"]
        - before_origin.get("skyrelay_origin_publications_total", 0.0)
        == 5
    )
    assert origin_after["skyrelay_origin_leading_channels"] >= 1
    published = origin_after["skyrelay_origin_publish_seconds_count"] - before_origin.get(
        "skyrelay_origin_publish_seconds_count", 0.0
    )
    assert published == 5
    for client in clients:
        await client.ws.close()
