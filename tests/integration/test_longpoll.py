"""Long-poll with aiohttp alone: follow a channel through 100 publications and a dropped
request, with no gap and no duplicate; and recovery served from the edge's hot cache."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from cent import AsyncClient, HistoryRequest, PublishRequest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import channel
from tests.support.wsclient import connect_raw


async def poll(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], timeout: float = 30
) -> dict[str, Any]:
    async with session.post(
        f"{url}/connection/longpoll", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status == 200, answer
        return answer


async def test_long_poll_follows_a_channel_without_gap_or_duplicate(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    tok = token("poller")
    url = cluster.edge_url(0)
    first = await poll(session, url, {"token": tok, "channels": {ch: {}}, "timeout": 1})
    assert first["publications"] == []
    cursor = first["cursor"]
    received: list[tuple[int, Any]] = []

    async def publisher() -> None:
        for n in range(100):
            await api.publish(PublishRequest(channel=ch, data={"n": n}))
            if n % 10 == 0:
                await asyncio.sleep(0.01)

    task = asyncio.ensure_future(publisher())
    dropped = False
    deadline = asyncio.get_running_loop().time() + 60
    while len(received) < 100:
        assert asyncio.get_running_loop().time() < deadline, "long-poll stalled"
        if not dropped and len(received) >= 40:
            # A forced reconnect: a request dies mid-wait; the next one resumes from the cursor.
            dropped = True
            with contextlib.suppress(TimeoutError):
                await poll(
                    session, url, {"token": tok, "cursor": cursor, "timeout": 5}, timeout=0.001
                )
        answer = await poll(session, url, {"token": tok, "cursor": cursor, "timeout": 5})
        assert answer["unrecovered"] == []
        received += [(p["offset"], p["data"]) for p in answer["publications"]]
        cursor = answer["cursor"]
    await task
    assert received == [(n + 1, {"n": n}) for n in range(100)]


async def test_long_poll_reports_positions_it_cannot_continue(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    await api.publish(PublishRequest(channel=ch, data={}))
    answer = await poll(
        session,
        cluster.edge_url(0),
        {"token": token(), "channels": {ch: {"offset": 0, "epoch": "gone"}}, "timeout": 1},
    )
    assert answer["unrecovered"] == [ch]
    assert answer["publications"] == []
    assert answer["positions"][ch]["offset"] == 1


async def test_long_poll_bad_requests_are_named(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    url = f"{cluster.edge_url(0)}/connection/longpoll"
    cases = [
        (b"{nope", 400, 107),
        (b'{"token": "x", "channels": {"a": {}}}', 401, 3500),
        (b'{"token": "%s"}' % token().encode(), 400, 107),
        (b'{"token": "%s", "cursor": "!!"}' % token().encode(), 400, 107),
        (b'{"token": "%s", "channels": {"nope:a": {}}}' % token().encode(), 400, 102),
    ]
    for body, status, code in cases:
        async with session.post(url, data=body) as resp:
            assert resp.status == status, body
            assert (await resp.json())["error"]["code"] == code


async def test_recovery_served_from_the_edge_cache_asks_nothing_of_the_origin(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    edge = cluster.edge_url(0)
    keeper, _ = await connect_raw(session, cluster.ws_url(0), token("keeper"))
    assert "subscribe" in await keeper.command("subscribe", {"channel": ch})
    client, _ = await connect_raw(session, cluster.ws_url(0), token("mobile"))
    reply = await client.command("subscribe", {"channel": ch, "recoverable": True})
    epoch = reply["subscribe"]["epoch"]
    await client.ws.close()
    for n in range(5):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await keeper.wait_pushes(5)

    origin_before = await metric_labeled(session, edge, "origin")
    edge_before = await metric_labeled(session, edge, "edge")
    again, _ = await connect_raw(session, cluster.ws_url(0), token("mobile"))
    reply = await again.command(
        "subscribe",
        {"channel": ch, "recoverable": True, "recover": True, "offset": 0, "epoch": epoch},
    )
    assert reply["subscribe"]["recovered"] is True
    assert [p["data"]["n"] for p in reply["subscribe"]["publications"]] == list(range(5))
    assert await metric_labeled(session, edge, "origin") == origin_before
    assert await metric_labeled(session, edge, "edge") == edge_before + 1
    await again.ws.close()
    await keeper.ws.close()


async def metric_labeled(session: aiohttp.ClientSession, base: str, source: str) -> float:
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    prefix = f'skyrelay_edge_recovery_reads_total{{source="{source}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_long_poll_carries_publications_once_each_in_order(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    url = cluster.edge_url(0)
    items = [{"channel": ch, "data": {"n": n}, "idempotency_key": f"k{n}"} for n in range(3)]
    first = await poll(session, url, {"token": token("lp-pub"), "publish": items})
    assert [p["offset"] for p in first["published"]] == [1, 2, 3]
    # The same keys again (a retry after a lost answer): nothing new is published.
    again = await poll(session, url, {"token": token("lp-pub"), "publish": items})
    assert [p["offset"] for p in again["published"]] == [1, 2, 3]
    bad = [{"channel": "nope:x", "data": {}}, {"channel": ch, "data": {"n": 9}}]
    refused = await poll(session, url, {"token": token("lp-pub"), "publish": bad})
    assert refused["published"] == [{"error": {"code": 102, "message": "unknown channel"}}]
    history = await api.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.data for p in history.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
