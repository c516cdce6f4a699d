"""A TCP proxy that injects network faults, for tests and benchmarks on one machine.

TCP hides packet loss from applications: what they see is latency, jitter, stalls while a
segment is retransmitted, connections reset, and paths that go silent. So that is what this
proxy makes, per chunk of bytes and per connection, never reordering bytes within a
connection:

- ``latency`` and ``jitter``: every chunk waits ``latency`` plus up to ``jitter`` more;
- ``loss``: a chunk is held ``loss_delay`` longer, as if a segment was lost and resent;
- ``reset``: the connection is reset (RST both ways), as a middlebox or a peer's crash does;
- ``stall()`` / ``resume()``: nothing moves until resumed (a silent path, a hung peer); the
  proxy stops reading too, so senders feel the back-pressure;
- ``cut()``: every open connection is reset now; new ones are still accepted.

Run one in a test's event loop (``FaultProxy``), or as a process:
``python -m skyrelay.testing.faultproxy --listen 127.0.0.1:9100 --target 127.0.0.1:8100
--latency 0.02 --jitter 0.01 --loss 0.01``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

# Bytes read at once from either side.
CHUNK = 65536
# Chunks waiting to be sent, per direction, before the proxy stops reading.
QUEUE_CHUNKS = 64

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dialer = Callable[[], Awaitable[Streams]]


@dataclass
class Faults:
    """What the proxy does to every chunk; change it at any time, it applies to the next."""

    # Seconds every chunk waits, each way.
    latency: float = 0.0
    # Up to this many seconds more, at random per chunk (order is kept).
    jitter: float = 0.0
    # Chance that a chunk is held ``loss_delay`` more, like a lost segment being resent.
    loss: float = 0.0
    loss_delay: float = 0.2
    # Chance, per chunk, that the connection is reset.
    reset: float = 0.0


@dataclass
class Stats:
    connections: int = 0
    # Connections reset by the proxy (``reset`` and ``cut``).
    resets: int = 0
    # Chunks held as lost.
    held: int = 0
    chunks: int = 0


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: the peer sees 'connection reset'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    def __init__(self, proxy: FaultProxy, client: Streams, server: Streams) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._pump(self.client[0], self.server[1])),
            asyncio.create_task(self._pump(self.server[0], self.client[1])),
        ]

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.stats.resets += 1
        _abort(self.client[1])
        _abort(self.server[1])
        for task in self.tasks:
            task.cancel()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read, schedule each chunk's release, send in order."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        sender = asyncio.create_task(self._send(queue, writer))
        last = 0.0
        try:
            while True:
                await proxy.flowing.wait()
                chunk = await reader.read(CHUNK)
                if not chunk:
                    break
                faults = proxy.faults
                rng = proxy.rng
                proxy.stats.chunks += 1
                if rng.random() < faults.reset:
                    self.reset()
                    return
                delay = faults.latency + rng.uniform(0.0, faults.jitter)
                if rng.random() < faults.loss:
                    proxy.stats.held += 1
                    delay += faults.loss_delay
                last = max(last, loop.time() + delay)
                await queue.put((last, chunk))
            await queue.put((last, b""))  # end of stream, after what is queued
            await sender
        except (ConnectionError, OSError):
            self.reset()
        finally:
            if not sender.done():
                sender.cancel()
            self._maybe_close()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                release, chunk = await queue.get()
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.proxy.flowing.wait()
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            self.reset()  # the receiving side went away: so does the sending side

    def _maybe_close(self) -> None:
        if self.closed or not all(t.done() or t is asyncio.current_task() for t in self.tasks):
            return
        self.closed = True
        for writer in (self.client[1], self.server[1]):
            writer.close()


class FaultProxy:
    """Listens on ``listen_host:listen_port`` (0 = any free port) and forwards every
    connection to the target, through ``faults``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        faults: Faults | None = None,
        seed: int | None = None,
        dial: Dialer | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.stats = Stats()
        # Set while bytes flow; cleared by stall().
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._dial = dial
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def cut(self) -> None:
        for connection in list(self._connections):
            connection.reset()
        self._connections.clear()

    async def _connect(self) -> Streams:
        if self._dial is not None:
            return await self._dial()
        return await asyncio.open_connection(*self.target)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            server = await self._connect()
        except OSError:
            _abort(writer)  # like a refused connection
            return
        connection = _Connection(self, (reader, writer), server)
        self._connections.add(connection)
        connection.start()
        try:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        finally:
            self._connections.discard(connection)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve(args: argparse.Namespace) -> None:
    faults = Faults(args.latency, args.jitter, args.loss, args.loss_delay, args.reset)
    host, port = args.listen
    proxy = FaultProxy(*args.target, listen_host=host, listen_port=port, faults=faults)
    await proxy.start()
    print(f"ready {host}:{proxy.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faultproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds, each way")
    parser.add_argument("--jitter", type=float, default=0.0, help="seconds, at most")
    parser.add_argument("--loss", type=float, default=0.0, help="chance a chunk is held")
    parser.add_argument("--loss-delay", type=float, default=0.2, help="seconds held")
    parser.add_argument("--reset", type=float, default=0.0, help="chance per chunk of a reset")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
