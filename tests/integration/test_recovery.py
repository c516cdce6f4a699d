"""Recovery from a stream position: exactly what was missed, or `recovered: false`."""

from __future__ import annotations

import aiohttp
from cent import AsyncClient, PublishRequest
from centrifuge import Client

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import Collector, channel, until
from tests.support.wsclient import connect_raw


async def test_reconnect_recovers_exactly_the_missed_publications(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel()
    client = Client(cluster.ws_url(0), token=token(), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, recoverable=True)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.subscribed) == 1, what="subscribed")
    first = events.subscribed[0]
    assert first.recoverable and first.positioned and not first.was_recovering
    await api.publish(PublishRequest(channel=ch, data={"n": 0}))
    await until(lambda: len(events.pubs) == 1, what="first publication")

    await client.disconnect()
    for n in range(1, 11):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await client.connect()
    await until(lambda: len(events.subscribed) == 2, what="resubscribed")
    again = events.subscribed[1]
    assert again.was_recovering and again.recovered
    await until(lambda: len(events.pubs) == 11, what="the 10 missed")

    # A marker published after recovery arrives next: nothing was replayed twice.
    await api.publish(PublishRequest(channel=ch, data={"n": 11}))
    await until(lambda: len(events.pubs) == 12, what="the marker")
    assert events.pubs == [(n + 1, {"n": n}) for n in range(12)]
    await client.disconnect()


async def test_position_from_another_epoch_is_not_recovered(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    reply = await raw.command(
        "subscribe",
        {"channel": ch, "recoverable": True, "recover": True, "offset": 1, "epoch": "other"},
    )
    result = reply["subscribe"]
    assert result["was_recovering"] is True
    assert "recovered" not in result
    assert "publications" not in result
    assert result["offset"] == 3
    assert result["epoch"] != "other"
    await raw.ws.close()


async def test_position_older_than_history_is_not_recovered_and_not_replayed(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel("short:")  # history keeps 5 publications
    first = await api.publish(PublishRequest(channel=ch, data={"n": 0}))
    for n in range(1, 20):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    reply = await raw.command(
        "subscribe",
        {
            "channel": ch,
            "recoverable": True,
            "recover": True,
            "offset": 1,
            "epoch": first.epoch,
        },
    )
    result = reply["subscribe"]
    assert result["was_recovering"] is True
    assert "recovered" not in result
    assert "publications" not in result
    assert (result["offset"], result["epoch"]) == (20, first.epoch)

    # Live publications continue right after the position the reply gave.
    await api.publish(PublishRequest(channel=ch, data={"n": 20}))
    pushes = await raw.wait_pushes(1)
    assert pushes[0]["pub"]["offset"] == 21
    await raw.ws.close()


async def test_reject_flag_turns_failed_recovery_into_error_112(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    await api.publish(PublishRequest(channel=ch, data={}))
    raw, _ = await connect_raw(session, cluster.ws_url(0), token())
    reply = await raw.command(
        "subscribe",
        {"channel": ch, "recoverable": True, "recover": True, "epoch": "gone", "flag": 3},
    )
    assert reply["error"]["code"] == 112
    await raw.ws.close()
