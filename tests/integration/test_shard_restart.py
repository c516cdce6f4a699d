"""A shard restarted from scratch has a new epoch: subscribers are told, never left with a gap.

(Replication, which keeps streams across a shard failure, is tested in the failover suite.)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import aiohttp
import pytest
from cent import AsyncClient, PublishRequest
from centrifuge import Client

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import Collector, channel, until
from tests.support.wsclient import connect_raw


@pytest.fixture
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("restart"), origins=1, edges=1, replication=1)
    yield c
    c.stop()


async def test_lost_stream_is_signalled_and_the_client_resubscribes_unrecovered(
    small_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    api = AsyncClient(f"{small_cluster.edge_url(0)}/api", API_KEY)
    client = Client(small_cluster.ws_url(0), token=token(), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, recoverable=True)
    raw, _ = await connect_raw(session, small_cluster.ws_url(0), token("raw"))
    try:
        await client.connect()
        await sub.subscribe()
        await until(lambda: len(events.subscribed) == 1, what="subscribed")
        assert "subscribe" in await raw.command("subscribe", {"channel": ch})
        await api.publish(PublishRequest(channel=ch, data={"n": 1}))
        await until(lambda: len(events.pubs) == 1, what="first publication")
        old_epoch = events.subscribed[0].stream_position

        small_cluster.signal("o0", signal.SIGKILL)
        small_cluster.processes["o0"].wait(10)
        small_cluster.restart("o0")

        # The raw subscriber sees the unsubscribe push with a resubscribe code.
        pushes = await raw.wait_pushes(2, timeout=30)
        unsub = next(p for p in pushes if "unsubscribe" in p)
        assert unsub == {
            "channel": ch,
            "unsubscribe": {"code": 2500, "reason": "insufficient state"},
        }
        # centrifuge-python resubscribes by itself and learns its position was not recovered.
        await until(lambda: len(events.subscribed) == 2, timeout=30, what="resubscribed")
        again = events.subscribed[1]
        assert again.was_recovering and not again.recovered
        assert again.stream_position is not None and old_epoch is not None
        assert again.stream_position.epoch != old_epoch.epoch
        # And it is live again on the new stream.
        await api.publish(PublishRequest(channel=ch, data={"n": 2}))
        await until(lambda: len(events.pubs) == 2, what="publication on the new stream")
        assert events.pubs[1] == (1, {"n": 2})
    finally:
        await client.disconnect()
        await raw.ws.close()
        await api._session.close()


async def test_edge_sigterm_tells_clients_to_reconnect_elsewhere(
    small_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, _ = await connect_raw(session, small_cluster.ws_url(0), token("drained"))
    small_cluster.signal("e0", signal.SIGTERM)
    assert await client.wait_closed() == 3001  # shutdown: clients reconnect
    assert small_cluster.processes["e0"].wait(10) == 0
