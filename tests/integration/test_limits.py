"""Limits: a client that stops reading is cut (3008) while 100 others keep receiving in order;
connections per user and per edge. (The publish rate is in the bad-input catalogue.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel, until
from tests.support.hostile import frame, upgrade_request
from tests.support.wsclient import RawClient, connect_raw

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("limits"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml=(
            "client_outbound_limit = 262144\nclient_send_buffer = 32768\n"
            "max_connections_per_user = 2"
        ),
    )
    yield c
    c.stop()


async def stalled_client(port: int, tok: str, ch: str) -> asyncio.StreamWriter:
    """A WebSocket client that subscribes and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: fills fast
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade_request(port))
    await reader.readuntil(b"\r\n\r\n")
    commands = [{"id": 1, "connect": {"token": tok}}, {"id": 2, "subscribe": {"channel": ch}}]
    writer.write(frame("\n".join(json.dumps(c) for c in commands).encode()))
    await writer.drain()
    await reader.read(4096)  # the replies; from now on nothing is read
    return writer


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The kernel's state of a loopback TCP socket (``/proc/net/tcp``; "01" is ESTABLISHED)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == local_port and int(remote, 16) == remote_port:
            return fields[3]
    return None


async def disconnects(session: aiohttp.ClientSession, base: str, code: int) -> float:
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    prefix = f'skyrelay_edge_disconnects_total{{code="{code}"}} '
    return next((float(x[len(prefix) :]) for x in text.splitlines() if x.startswith(prefix)), 0.0)


async def test_a_client_that_stops_reading_is_cut_and_the_others_are_not_slowed(
    limited: LocalCluster, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    edge = limited.edge_url(0)
    before = await disconnects(session, edge, 3008)
    readers: list[RawClient] = []
    # The readers' own session: 100 sockets would fill the shared session's pool.
    pool = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    for i in range(100):
        client, _ = await connect_raw(pool, limited.ws_url(0), token(f"reader{i}"))
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
        readers.append(client)
    stalled = await stalled_client(limited.spec.edge_port(0), token("stalled"), ch)

    big = "x" * 16_000
    total = 60  # ~1 MB for the stalled client: past every buffer on its way
    reading = asyncio.gather(*(c.wait_pushes(total, timeout=60) for c in readers))
    for n in range(total):
        async with session.post(
            f"{edge}/api/publish",
            json={"channel": ch, "data": {"n": n, "pad": big}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            assert "result" in await resp.json()
    received = await reading
    for pushes in received:
        assert [p["pub"]["offset"] for p in pushes] == list(range(1, total + 1))
    assert await disconnects(session, edge, 3008) == before + 1
    stalled.close()
    for client in readers:
        await client.ws.close()
    await pool.close()


async def test_cutting_a_slow_client_mid_fan_out_costs_no_one_else_a_publication(
    limited: LocalCluster, session: aiohttp.ClientSession
) -> None:
    """The slow client subscribes first, so it is cut in the middle of a hand-out, with
    subscribers of its channel after it and another channel's batch waiting behind it."""
    slow_ch, other_ch = channel("slow"), channel("other")
    edge = limited.edge_url(0)
    before = await disconnects(session, edge, 3008)
    stalled = await stalled_client(limited.spec.edge_port(0), token("stalled2"), slow_ch)
    readers = []
    for i, ch in enumerate((slow_ch, other_ch)):
        client, _ = await connect_raw(session, limited.ws_url(0), token(f"after{i}"))
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
        readers.append(client)
    total = 40  # ~650 KB for the stalled client: past its limit
    reading = asyncio.gather(*(c.wait_pushes(total, timeout=60) for c in readers))
    for n in range(total):
        async with session.post(
            f"{edge}/api/broadcast",
            json={"channels": [slow_ch, other_ch], "data": {"n": n, "pad": "x" * 16_000}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            assert resp.status == 200, await resp.text()
    for pushes in await reading:
        assert [p["pub"]["data"]["n"] for p in pushes] == list(range(total))
    assert await disconnects(session, edge, 3008) == before + 1
    stalled.close()
    for client in readers:
        await client.ws.close()


async def test_a_client_that_closes_but_never_reads_is_dropped(
    limited: LocalCluster, session: aiohttp.ClientSession
) -> None:
    """Its socket holds publications it never reads, under the outbound limit; after its close
    frame the edge cannot finish the close handshake, and must drop the socket anyway."""
    ch = channel("closing")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", limited.spec.edge_port(0)))
    commands = [{"id": 1, "connect": {"token": token("closer")}}]
    commands.append({"id": 2, "subscribe": {"channel": ch}})
    sock.sendall(
        upgrade_request(limited.spec.edge_port(0))
        + frame("\n".join(json.dumps(c) for c in commands).encode())
    )
    got = b""
    while b'"subscribe"' not in got:
        got += await asyncio.get_running_loop().run_in_executor(None, sock.recv, 4096)
    for n in range(14):  # ~225 KB: past the kernel buffers, not enough to be cut as slow
        async with session.post(
            f"{limited.edge_url(0)}/api/publish",
            json={"channel": ch, "data": {"n": n, "pad": "x" * 16_000}},
            headers={"X-API-Key": API_KEY},
        ) as resp:
            assert resp.status == 200
    sock.sendall(frame(b"\x03\xe8", opcode=0x8))
    # The edge cannot finish the close (its writes never drain), so it must let the socket
    # go: the kernel then holds it as an orphan (FIN-WAIT-1) instead of the edge (ESTABLISHED).
    edge_side = (limited.spec.edge_port(0), sock.getsockname()[1])
    assert tcp_state(*edge_side) == "01"
    await until(lambda: tcp_state(*edge_side) != "01", timeout=15, what="the edge drops it")
    sock.close()


async def test_connections_per_user_are_limited(
    limited: LocalCluster, session: aiohttp.ClientSession
) -> None:
    tok = token("busy-user")
    first, _ = await connect_raw(session, limited.ws_url(0), tok)
    second, _ = await connect_raw(session, limited.ws_url(0), tok)
    third = RawClient(await session.ws_connect(limited.ws_url(0), autoclose=False))
    await third.send_raw(json.dumps({"id": 1, "connect": {"token": tok}}))
    assert await third.wait_closed() == 3504
    await first.ws.close()
    again, reply = await connect_raw(session, limited.ws_url(0), tok)
    assert "connect" in reply  # a slot was freed
    for client in (second, again):
        await client.ws.close()


async def test_edge_refuses_connections_past_its_limit(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    small = start_cluster(
        tmp_path_factory.mktemp("edge-limit"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml="max_connections = 2",
    )
    try:
        held = [(await connect_raw(session, small.ws_url(0), token(f"u{i}")))[0] for i in range(2)]
        third = RawClient(await session.ws_connect(small.ws_url(0), autoclose=False))
        await third.send_raw(json.dumps({"id": 1, "connect": {"token": token("u3")}}))
        # 3013 reconnects with backoff: a load balancer sends the retry to another edge.
        assert await third.wait_closed() == 3013
        await held[0].ws.close()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the slot frees once the edge has seen the close
            again = RawClient(await session.ws_connect(small.ws_url(0), autoclose=False))
            await again.send_raw(json.dumps({"id": 1, "connect": {"token": token("u3")}}))
            with contextlib.suppress(ConnectionError):
                if "connect" in await again.reply(1):
                    break
            assert asyncio.get_running_loop().time() < deadline
        await held[1].ws.close()
        await again.ws.close()
    finally:
        small.stop()
