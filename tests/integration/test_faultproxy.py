"""The fault-injecting proxy itself, in front of an echo server on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from skyrelay.testing.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(60)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    got = await reader.read(-1)
    writer.close()
    return got


async def test_bytes_arrive_whole_and_in_order_through_latency_jitter_and_loss(
    echo_port: int,
) -> None:
    faults = Faults(latency=0.002, jitter=0.01, loss=0.3, loss_delay=0.02)
    proxy = await FaultProxy("127.0.0.1", echo_port, faults=faults, seed=7).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        sent = b""
        for _ in range(50):  # many small writes: many chunks, each delayed on its own
            chunk = os.urandom(100)
            sent += chunk
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)
        writer.write_eof()
        assert await reader.read(-1) == sent
        writer.close()
        assert proxy.stats.held > 0  # some chunks were held as lost, and still in order
    finally:
        await proxy.close()


async def test_latency_is_added_each_way(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port, faults=Faults(latency=0.05)).start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _roundtrip(proxy.port, b"ping") == b"ping"
        assert loop.time() - started >= 0.1 * 0.99  # there and back
    finally:
        await proxy.close()


async def test_resets_and_cuts_reset_the_connection(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port, faults=Faults(reset=1.0)).start()
    try:
        with pytest.raises(ConnectionResetError):
            await _roundtrip(proxy.port, b"x" * 1000)
        assert proxy.stats.resets == 1

        proxy.faults.reset = 0.0
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        proxy.cut()
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
        writer.close()
        assert proxy.stats.resets == 2
        assert await _roundtrip(proxy.port, b"again") == b"again"  # new ones go through
    finally:
        await proxy.close()


async def test_a_stall_holds_everything_until_resumed(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        proxy.stall()
        writer.write(b"two")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(3), 0.3)
        proxy.resume()
        assert await reader.readexactly(3) == b"two"
        writer.close()
    finally:
        await proxy.close()


async def test_an_unreachable_target_is_a_refused_connection() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    proxy = await FaultProxy("127.0.0.1", port).start()
    try:
        with pytest.raises(ConnectionError):
            await _roundtrip(proxy.port, b"x")
    finally:
        await proxy.close()
