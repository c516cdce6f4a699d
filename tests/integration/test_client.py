"""The Skyrelay client on a running cluster: end-to-end encryption, transport fallback when an
edge refuses WebSocket (remembered for the next start), long-poll both ways, and the
``skyrelay sub`` command."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from skyrelay.client import (
    Client,
    ClientEvent,
    Connecting,
    ConnectionRefused,
    DecryptionFailed,
    Keyring,
    Publication,
    Subscription,
    new_key,
)
from skyrelay.testing.cluster import LocalCluster, render_config
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, until


async def api(session: aiohttp.ClientSession, base: str, method: str, **params: Any) -> Any:
    async with session.post(
        f"{base}/api/{method}", json=params, headers={"X-API-Key": API_KEY}
    ) as resp:
        body = await resp.json()
    assert "result" in body, body
    return body["result"]


async def take(sub: Subscription, count: int, timeout: float = 15) -> list[Any]:
    got: list[Any] = []

    async def run() -> None:
        async for event in sub:
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_encrypted_channel_relay_holds_ciphertext_and_keyless_client_gets_errors(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch, plain_ch = channel("e2e-"), channel()
    k1, k2 = new_key(), new_key()
    alice_keys, bob_keys = Keyring(), Keyring()
    for ring in (alice_keys, bob_keys):
        ring.add(ch, "k1", k1)
    edges = [cluster.edge_url(0), cluster.edge_url(1)]
    async with (
        Client(edges, token=token("alice"), keys=alice_keys) as alice,
        Client(edges[::-1], token=token("bob"), keys=bob_keys) as bob,
        Client(edges, token=token("eve")) as eve,
    ):
        bob_sub = await bob.subscribe(ch)
        eve_sub = await eve.subscribe(ch)
        eve_plain = await eve.subscribe(plain_ch)
        for sub in (bob_sub, eve_sub, eve_plain):
            await asyncio.wait_for(sub.wait_subscribed(), 15)
        for n in range(3):
            await alice.publish(ch, {"secret": f"attack at dawn {n}"})
        # Rotation: the new key goes to every holder; the newest seals, the old still opens.
        bob_keys.add(ch, "k2", k2)
        alice_keys.add(ch, "k2", k2)
        for n in range(3, 5):
            await alice.publish(ch, {"secret": f"attack at dawn {n}"})
        await asyncio.wait_for(alice.flush(), 15)
        opened = await take(bob_sub, 5)
        refused = await take(eve_sub, 5)
        # The keyless client is still fine: it goes on receiving other channels.
        await api(session, edges[1], "publish", channel=plain_ch, data={"hello": 1})
        (plain,) = await take(eve_plain, 1)
    assert [(e.offset, e.data) for e in opened] == [
        (n + 1, {"secret": f"attack at dawn {n}"}) for n in range(5)
    ]
    assert all(isinstance(e, DecryptionFailed) for e in refused)
    assert [e.offset for e in refused] == [1, 2, 3, 4, 5]
    assert {e.error.reason for e in refused} == {"no key for this key id"}
    assert isinstance(plain, Publication) and plain.data == {"hello": 1}
    history = await api(session, edges[0], "history", channel=ch, limit=-1)
    stored = orjson.dumps(history)
    assert b"attack" not in stored and b"dawn" not in stored
    assert [p["data"]["kid"] for p in history["publications"]] == ["k1"] * 3 + ["k2"] * 2
    assert all(p["data"]["e2e"] == 1 for p in history["publications"])


@pytest.fixture(scope="module")
def one_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(tmp_path_factory.mktemp("fallback"), origins=1, edges=1, replication=1)
    yield c
    c.stop()


def serve_only(cl: LocalCluster, transports: list[str]) -> None:
    """Restart the edge with ``edge.transports`` set."""
    listed = ", ".join(f'"{t}"' for t in transports)
    cl.spec = dataclasses.replace(cl.spec, edge_toml=f"transports = [{listed}]")
    cl.config_path.write_text(render_config(cl.spec))
    cl.signal("e0", signal.SIGTERM)
    cl.processes["e0"].wait(30)
    cl.restart("e0")


async def exchange(cl: LocalCluster, state: Path, events: list[ClientEvent]) -> str:
    """Subscribe, publish 3 through the client and get them back; returns the transport."""
    ch = channel()
    async with Client(
        [cl.edge_url(0)], token=token("fb"), state=state, on_event=events.append
    ) as c:
        sub = await c.subscribe(ch)
        await asyncio.wait_for(sub.wait_subscribed(), 15)
        for n in range(3):
            await c.publish(ch, {"n": n})
        got = await take(sub, 3)
        assert [(e.offset, e.data) for e in got] == [(n + 1, {"n": n}) for n in range(3)]
        return c.transport


async def test_edge_refusing_websocket_client_falls_back_and_remembers(
    one_edge: LocalCluster, tmp_path: Path
) -> None:
    serve_only(one_edge, ["http_stream", "sse", "longpoll"])
    state = tmp_path / "app.db"
    events: list[ClientEvent] = []
    assert await exchange(one_edge, state, events) == "http_stream"
    tried = [e.transport for e in events if isinstance(e, Connecting)]
    assert tried[:2] == ["websocket", "http_stream"]
    # The next start on this network goes straight to what worked.
    events.clear()
    assert await exchange(one_edge, state, events) == "http_stream"
    assert next(e.transport for e in events if isinstance(e, Connecting)) == "http_stream"


async def test_long_poll_only_edge_client_receives_and_sends(
    one_edge: LocalCluster, tmp_path: Path
) -> None:
    serve_only(one_edge, ["longpoll"])
    events: list[ClientEvent] = []
    assert await exchange(one_edge, tmp_path / "app.db", events) == "longpoll"


async def test_sub_command_prints_publications_from_a_position(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    for n in range(3):
        await api(session, cluster.edge_url(1), "publish", channel=ch, data={"n": n})
    args = ["--edge", cluster.edge_url(0), "--since", "1", "--count", "3", "--timeout", "30"]
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is quick; the wait is in a thread
        [sys.executable, "-m", "skyrelay", "sub", *args, "--quiet", ch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SKYRELAY_TOKEN": token("cli")},
    )
    await until(lambda: proc.poll() is None, what="sub running")
    await api(session, cluster.edge_url(1), "publish", channel=ch, data={"n": 3})
    out, err = await asyncio.to_thread(proc.communicate, None, 60)
    assert proc.returncode == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines == [{"channel": ch, "offset": n + 1, "data": {"n": n}} for n in range(1, 4)]


async def test_refused_token_stops_the_client_with_a_clear_error(cluster: LocalCluster) -> None:
    async with Client([cluster.edge_url(0)], token="not-a-token") as c:
        sub = await c.subscribe(channel())
        await c.publish("news", {"x": 1})
        with pytest.raises(ConnectionRefused) as refused:
            await asyncio.wait_for(c.flush(), 15)
        assert refused.value.code == 3500
        with pytest.raises(ConnectionRefused):
            await asyncio.wait_for(take(sub, 1), 15)
        assert await c.queued() == 1  # kept for a run with a good token


async def test_a_restarted_app_continues_from_what_it_consumed(
    cluster: LocalCluster, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ch = channel()
    state = tmp_path / "app.db"
    edges = [cluster.edge_url(0)]
    async with Client(edges, token=token("resume"), state=state) as c:
        sub = await c.subscribe(ch)
        await asyncio.wait_for(sub.wait_subscribed(), 15)
        for n in range(2):
            await api(session, cluster.edge_url(1), "publish", channel=ch, data={"n": n})
        assert [e.offset for e in await take(sub, 2)] == [1, 2]
    for n in range(2, 4):
        await api(session, cluster.edge_url(1), "publish", channel=ch, data={"n": n})
    async with Client(edges, token=token("resume"), state=state) as c:
        sub = await c.subscribe(ch)
        got = await take(sub, 2)
    assert [(e.offset, e.data) for e in got] == [(3, {"n": 2}), (4, {"n": 3})]
