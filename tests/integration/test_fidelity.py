"""What the SDKs' own test suites found, each with its exact protocol answer: subscription
tokens on any channel, recovery that reaches no further than history on every edge, the
reject-unrecovered subscribe flag, join/leave pushed by namespace setting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from cent import AsyncClient, HistoryRemoveRequest, HistoryRequest, PublishRequest
from centrifuge import Client, JoinContext, StreamPosition

from skyrelay.testing.cluster import LocalCluster
from skyrelay.tokens import mint_token
from tests.integration.conftest import TOKEN_SECRET, token
from tests.support.helpers import Collector, channel, until
from tests.support.jsclient import JsClient
from tests.support.wsclient import RawClient, connect_raw


def sub_token(user: str, ch: str, **claims: Any) -> str:
    """A subscription token for ``ch``, valid for an hour unless ``claims`` say otherwise."""
    extra: dict[str, Any] = {"channel": ch, **claims}
    ttl = None if "exp" in claims else 3600
    return mint_token(TOKEN_SECRET, user, now=time.time(), ttl=ttl, extra=extra)


async def subscribe(raw: RawClient, ch: str, **params: Any) -> dict[str, Any]:
    return await raw.command("subscribe", {"channel": ch, **params})


async def wait_push(raw: RawClient, predicate: Callable[[dict[str, Any]], bool]) -> None:
    """Read until a push that ``predicate`` accepts has arrived."""
    while not any(predicate(p) for p in raw.pushes):
        await raw.wait_pushes(len(raw.pushes) + 1)


# 1. Subscription tokens on any channel.


async def test_every_subscription_token_is_verified_on_ordinary_channels(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("alice"))
    ch = channel()
    assert (await subscribe(raw, ch, token="invalid_token"))["error"]["code"] == 103
    expired = sub_token("alice", ch, exp=int(time.time()) - 10)
    assert (await subscribe(raw, ch, token=expired))["error"]["code"] == 109
    assert "subscribe" in await subscribe(raw, ch, token=sub_token("alice", ch))
    # A valid token for another channel is an attack, not a mistake: the connection goes.
    other = channel()
    command = {"id": 9, "subscribe": {"channel": other, "token": sub_token("alice", ch)}}
    await raw.send_raw(orjson.dumps(command).decode())
    assert await raw.wait_closed() == 3500


async def test_a_subscription_token_grants_what_the_namespace_refuses_without_one(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("bob"))
    for ch in (channel("closed:"), channel("tokened:"), channel("$")):
        refused = await subscribe(raw, ch)
        assert refused["error"]["code"] == 103, ch
        assert "subscribe" in await subscribe(raw, ch, token=sub_token("bob", ch)), ch
    await raw.ws.close()


async def test_user_limited_channels_admit_only_their_users(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel("dm:") + "#alice,bob"
    alice, _ = await connect_raw(session, cluster.ws_url(0), token("alice"))
    carol, _ = await connect_raw(session, cluster.ws_url(0), token("carol"))
    assert "subscribe" in await subscribe(alice, ch)
    assert (await subscribe(carol, ch))["error"]["code"] == 103
    await alice.ws.close()
    await carol.ws.close()


async def test_subscription_token_claims_apply_to_the_subscription(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("dora"))
    # expire_at, not exp, sets when the subscription must be refreshed.
    ch = channel()
    reply = await subscribe(raw, ch, token=sub_token("dora", ch, expire_at=int(time.time()) + 60))
    assert reply["subscribe"]["expires"] is True
    assert 50 <= reply["subscribe"]["ttl"] <= 60
    # override turns recovery on where the namespace does not force it.
    ch = channel()
    forced = sub_token("dora", ch, override={"force_recovery": {"value": True}})
    result = (await subscribe(raw, ch, token=forced))["subscribe"]
    assert result["recoverable"] is True and result["positioned"] is True
    # info becomes the client's chan_info in that channel.
    ch = channel("room:")
    info = {"role": "moderator"}
    assert "subscribe" in await subscribe(raw, ch, token=sub_token("dora", ch, info=info))
    presence = (await raw.command("presence", {"channel": ch}))["presence"]["presence"]
    assert [c.get("chan_info") for c in presence.values()] == [info]
    await raw.ws.close()


async def test_centrifuge_python_and_js_are_refused_an_invalid_subscription_token(
    cluster: LocalCluster,
) -> None:
    ch = channel()
    client = Client(cluster.ws_url(0), token=token("py"), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, token="invalid_token")
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.unsubscribed) == 1, what="the subscription refused")
    assert events.unsubscribed[0].code == 103
    await client.disconnect()

    js = await JsClient.start(cluster.ws_url(0), token("js"))
    try:
        await js.call("connect")
        await js.call("subscribe", channel=ch, options={"token": "invalid_token"})
        (refused,) = await js.wait(lambda e: e["ev"] == "unsubscribed")
        assert refused["code"] == 103
    finally:
        await js.close()


# 2. Recovery reaches no further than history, on a warm edge as on a cold one.


async def recover(
    session: aiohttp.ClientSession, url: str, ch: str, offset: int, epoch: str, flag: int = 1
) -> dict[str, Any]:
    raw, _ = await connect_raw(session, url, token("rec"))
    params = {"recoverable": True, "recover": True, "offset": offset, "epoch": epoch, "flag": flag}
    reply = await subscribe(raw, ch, **params)
    await raw.ws.close()
    return reply


async def same_on_both_edges(
    session: aiohttp.ClientSession, cluster: LocalCluster, ch: str, offset: int, epoch: str
) -> dict[str, Any]:
    """Recover on edge 0 (warm: it holds the channel) and on edge 1 (cold: it reads the
    origin's history); the two answers must be the same. Returns the subscribe result."""
    warm = await recover(session, cluster.ws_url(0), ch, offset, epoch)
    cold = await recover(session, cluster.ws_url(1), ch, offset, epoch)
    assert warm == cold
    result: dict[str, Any] = warm["subscribe"]
    return result


async def warm_channel(
    session: aiohttp.ClientSession, cluster: LocalCluster, api: AsyncClient, ch: str, count: int
) -> tuple[RawClient, str]:
    """Edge 0 holds ``ch`` (a live subscriber, so its hot cache fills); ``count`` published."""
    holder, _ = await connect_raw(session, cluster.ws_url(0), token("holder"))
    epoch = (await subscribe(holder, ch, recoverable=True))["subscribe"]["epoch"]
    for n in range(count):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await holder.wait_pushes(count)
    return holder, epoch


async def test_warm_and_cold_edges_give_the_same_answer_past_history_size(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel("short:")  # history keeps 5
    holder, epoch = await warm_channel(session, cluster, api, ch, 8)
    history = await api.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.offset for p in history.publications] == [4, 5, 6, 7, 8]

    result = await same_on_both_edges(session, cluster, ch, 1, epoch)
    assert "recovered" not in result and "publications" not in result
    assert result["offset"] == 8

    # Within history both recover, with the same publications.
    result = await same_on_both_edges(session, cluster, ch, 3, epoch)
    assert result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == [4, 5, 6, 7, 8]
    await holder.ws.close()


async def test_warm_and_cold_edges_give_the_same_answer_past_history_ttl(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel("brief:")  # history keeps publications 1 s
    holder, epoch = await warm_channel(session, cluster, api, ch, 3)

    deadline = time.monotonic() + 15
    while (await api.history(HistoryRequest(channel=ch, limit=-1))).publications:
        assert time.monotonic() < deadline, "history never expired"
        await asyncio.sleep(0.1)  # polling the history's expiry, with the deadline above
    assert "recovered" not in await same_on_both_edges(session, cluster, ch, 0, epoch)
    await holder.ws.close()


async def test_history_remove_empties_the_hot_caches_too(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel("short:")
    holder, epoch = await warm_channel(session, cluster, api, ch, 3)
    await api.history_remove(HistoryRemoveRequest(channel=ch))
    # The cleared notice reaches edge 0 on the same link as the publications: a marker
    # published after it shows it arrived.
    await api.publish(PublishRequest(channel=ch, data={"marker": True}))
    await holder.wait_pushes(4)
    assert "recovered" not in await same_on_both_edges(session, cluster, ch, 1, epoch)
    await holder.ws.close()


# 3. The reject-unrecovered flag (bit 2): error 112 instead of `recovered: false`.


async def test_the_reject_flag_answers_112_on_warm_and_cold_edges(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel("short:")
    holder, epoch = await warm_channel(session, cluster, api, ch, 8)
    for url in (cluster.ws_url(0), cluster.ws_url(1)):
        reply = await recover(session, url, ch, 1, epoch, flag=3)
        assert reply["error"]["code"] == 112, url
        assert reply["error"]["message"]
        reply = await recover(session, url, ch, 1, "another-epoch", flag=3)
        assert reply["error"]["code"] == 112, url
        reply = await recover(session, url, ch, 5, epoch, flag=3)
        assert reply["subscribe"]["recovered"] is True, url
    await holder.ws.close()


async def test_get_state_is_called_again_after_112_by_both_sdks(
    cluster: LocalCluster, api: AsyncClient
) -> None:
    ch = channel("short:")
    for n in range(8):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    top = await api.history(HistoryRequest(channel=ch, limit=0))
    stale = {"offset": 1, "epoch": top.epoch}
    fresh = {"offset": top.offset, "epoch": top.epoch}

    js = await JsClient.start(cluster.ws_url(0), token("js"))
    try:
        await js.call("connect")
        await js.call("subscribe", channel=ch, options={"states": [stale, fresh]})
        (subscribed,) = await js.wait(lambda e: e["ev"] == "subscribed")
        assert subscribed["recovered"] is True and subscribed["offset"] == top.offset
        assert [e["calls"] for e in js.events if e["ev"] == "get_state"] == [1, 2]
    finally:
        await js.close()

    calls: list[str] = []

    async def get_state(channel: str) -> StreamPosition:
        calls.append(channel)
        position = stale if len(calls) == 1 else fresh
        return StreamPosition(offset=position["offset"], epoch=position["epoch"])

    client = Client(cluster.ws_url(1), token=token("py"), proxy=None)
    events = Collector()
    sub = client.new_subscription(ch, events=events, get_state=get_state)
    await client.connect()
    await sub.subscribe()
    await until(lambda: len(events.subscribed) == 1, what="subscribed after get_state")
    assert events.subscribed[0].recovered
    assert calls == [ch, ch]
    await client.disconnect()


# 4. Join/leave pushed to every subscriber where the namespace says so.


async def test_join_and_leave_are_pushed_without_asking_where_the_namespace_forces_it(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel("room:")
    joins: list[JoinContext] = []

    class Recorder(Collector):
        async def on_join(self, ctx: JoinContext) -> None:
            joins.append(ctx)

    client = Client(cluster.ws_url(0), token=token("py"), proxy=None)
    sub = client.new_subscription(ch, events=Recorder())  # join_leave not asked for
    await client.connect()
    await sub.subscribe()
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("quiet"))
    assert "subscribe" in await subscribe(raw, ch)  # join_leave not asked for
    other, _ = await connect_raw(session, cluster.ws_url(1), token("guest"))
    assert "subscribe" in await subscribe(other, ch)
    await until(lambda: any(j.info.user == "guest" for j in joins), what="the join in python")
    await wait_push(raw, lambda p: p.get("join", {}).get("info", {}).get("user") == "guest")
    await other.ws.close()
    await wait_push(raw, lambda p: p.get("leave", {}).get("info", {}).get("user") == "guest")
    await raw.ws.close()
    await client.disconnect()
