"""A load generator process: many subscribers to one channel of one server, counting what they
receive. Run by the benchmark scenarios.

It must never be the bottleneck, so it does the least a receiver can: one ``asyncio.Protocol``
per connection (no task, no await per message), a minimal WebSocket frame reader, and counting
by a substring count over each frame rather than by parsing JSON. Only a stride of the
connections parse the send times (``"t"``) out of what they get, for the latency sample.

    python -m skyrelay.benchmarks.receivers --kind skyrelay --url ws://... --token T --channel C \\
        --connections N --expect M

Prints ``ready`` once every connection is subscribed, then one JSON line with the counts and a
sample of publish-to-receive latencies (messages carry their send time as ``t``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import sys
import time
import zlib
from typing import Any, cast
from urllib.parse import urlsplit

from skyrelay.client import protobuf_codec
from skyrelay.protocol.protobuf_wire import split_delimited

# Latency samples kept per process.
LATENCY_SAMPLE = 20_000
# Seconds to connect everything, and to wait for the expected messages.
CONNECT_TIMEOUT = 120.0
# Connections opened at once; more wait for a free slot.
CONNECTS_IN_FLIGHT = 200
# Attempts per connection when a server answers the handshake with an error (Pushpin answers
# some 502 under bursts), with this pause between them, in seconds.
CONNECT_ATTEMPTS = 50
RETRY_PAUSE = 0.1
# The client window the edge asks for by default (edge.websocket_compression_window_bits).
DEFLATE_WINDOW_BITS = 10
_T = re.compile(rb'"t":\s*([0-9.]+)')
_PUSH = b'{"push"'


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame. The zero key is a valid mask that leaves the payload unchanged."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class Counter:
    """What one process received, over all its connections."""

    def __init__(self, connections: int, expect: int) -> None:
        self.expect = expect
        self.received = 0
        self.first = 0.0
        self.last = 0.0
        # CPU seconds this process had used at the first message, and once every connection
        # had all it expected (or the wait ended).
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.latencies: list[float] = []
        # Every ``stride``-th connection samples latencies, so the sample spans the fan-out
        # order (the last connection served is in it, not only the first ones).
        self.stride = max(1, connections * max(1, expect) // LATENCY_SAMPLE)
        self.ready = 0
        self.complete = 0
        self.all_complete = asyncio.Event()
        self.connections = connections

    def got(self, count: int) -> None:
        now = time.time()
        if not self.received:
            self.first = now
            self.cpu_first = time.process_time()
        self.received += count
        self.last = now

    def sample(self, data: bytes) -> None:
        now = time.time()
        for match in _T.finditer(data):
            self.latencies.append(now - float(match.group(1)))

    def mark_ready(self) -> None:
        self.ready += 1

    def mark_complete(self) -> None:
        self.complete += 1
        if self.complete == self.connections:
            self.cpu_last = time.process_time()
            self.all_complete.set()


class Receiver(asyncio.Protocol):
    """One connection: an HTTP upgrade (or a plain GET), then frames or a byte stream."""

    def __init__(self, args: argparse.Namespace, counter: Counter, index: int) -> None:
        self.args = args
        self.counter = counter
        self.sampled = index % counter.stride == 0
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.seen = 0
        self.is_ready = False
        self.is_complete = False
        # True once the server refused or dropped the connection before it was ready,
        # False once it is ready.
        self.settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # ``--deflate``: as browsers do, every message compressed, in the window the edge set.
        self.deflate: Any = (
            zlib.compressobj(6, zlib.DEFLATED, -DEFLATE_WINDOW_BITS) if args.deflate else None
        )

    def request(self) -> bytes:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        writable = cast(asyncio.Transport, transport)
        self.transport = writable
        writable.write(self.request())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.settled.done():
            self.settled.set_result(True)

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.on_data(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
        rest = bytes(self.buffer[end + 4 :])
        self.buffer.clear()
        if b" 101 " not in status and b" 200 " not in status:
            assert self.transport is not None
            self.transport.close()
            return
        self.upgraded = True
        self.opened()
        if rest:
            self.on_data(rest)

    def opened(self) -> None:
        pass

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def count(self, n: int, data: bytes) -> None:
        if not n:
            return
        self.counter.got(n)
        if self.sampled and len(self.counter.latencies) < LATENCY_SAMPLE:
            self.counter.sample(data)
        self.seen += n
        if self.seen >= self.counter.expect and not self.is_complete:
            self.is_complete = True
            self.counter.mark_complete()

    def set_ready(self) -> None:
        if not self.is_ready:
            self.is_ready = True
            self.counter.mark_ready()
            if not self.settled.done():
                self.settled.set_result(False)

    def send(self, text: bytes, opcode: int = 0x1) -> None:
        if self.transport is not None and not self.transport.is_closing():
            deflate = self.deflate
            if deflate is not None:
                data = deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
                frame = bytearray(client_frame(data[:-4], opcode))
                frame[0] |= 0x40
                self.transport.write(bytes(frame))
            else:
                self.transport.write(client_frame(text, opcode))


class WebSocketReceiver(Receiver):
    def request(self) -> bytes:
        url = urlsplit(self.args.url)
        key = base64.b64encode(os.urandom(16)).decode()
        path = url.path + (f"?{url.query}" if url.query else "")
        extension = ""
        if self.deflate is not None:
            extension = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        return (
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extension}\r\n"
        ).encode()

    def on_data(self, data: bytes) -> None:
        buffer = self.buffer
        # The common case: one whole small text frame per read, read without copying.
        if not buffer and len(data) > 2 and data[0] == 0x81:
            size = data[1]
            if size < 126 and len(data) == 2 + size:
                self.on_message(data[2:])
                return
        buffer += data
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            opcode, size = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F
            head = 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if end - pos < head + size:
                break
            payload = bytes(buffer[pos + head : pos + head + size])
            if buffer[pos] & 0x40:  # compressed, each message on its own
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            pos += head + size
            if opcode == 0x9:
                if self.transport is not None:
                    self.transport.write(client_frame(payload, 0xA))
            elif opcode in (0x0, 0x1, 0x2):
                self.on_message(payload)
        del buffer[:pos]

    def on_message(self, payload: bytes) -> None:
        raise NotImplementedError


class SkyrelayReceiver(WebSocketReceiver):
    def opened(self) -> None:
        self.send(self.connect_command() + b"\n" + self.subscribe_command())

    def connect_command(self) -> bytes:
        return json.dumps({"id": 1, "connect": {"token": self.args.token}}).encode()

    def subscribe_command(self) -> bytes:
        return json.dumps({"id": 2, "subscribe": {"channel": self.args.channel}}).encode()

    def on_message(self, payload: bytes) -> None:
        pushes = payload.count(_PUSH)
        if pushes:
            self.count(pushes, payload)
            return
        for line in payload.split(b"\n"):
            if line == b"{}":
                self.send(b"{}")
            elif line.startswith(b'{"id":2,"error"'):
                # A temporary error (a busy edge's link dropped during a connect storm): retry.
                self.send(self.subscribe_command())
            elif b'"subscribe"' in line:
                self.set_ready()


class SkyrelayProtobufReceiver(SkyrelayReceiver):
    """The protobuf wire format: binary frames of length-delimited Replies."""

    def request(self) -> bytes:
        head = super().request()
        return head[:-2] + b"Sec-WebSocket-Protocol: centrifuge-protobuf\r\n\r\n"

    def send(self, text: bytes, opcode: int = 0x2) -> None:
        super().send(text, 0x2)

    def opened(self) -> None:
        channel = self.args.channel.encode()
        self.needle = b"\x12" + bytes((len(channel),)) + channel
        self.send(
            protobuf_codec.encode(
                [
                    {"id": 1, "connect": {"token": self.args.token}},
                    {"id": 2, "subscribe": {"channel": self.args.channel}},
                ]
            )
        )

    def on_message(self, payload: bytes) -> None:
        # Every push carries the channel (Push field 2: 0x12, its length, its name); counted
        # at C speed, as the JSON receiver counts its pushes, so that this load generator
        # costs the machine no more than that one.
        pushes = payload.count(self.needle)
        if pushes:
            self.count(pushes, payload)
            return
        for reply in split_delimited(payload):
            if not reply:
                self.send(protobuf_codec.PONG)
            elif reply.startswith(b"\x08\x02\x12"):  # id 2, an error: retry
                self.send(
                    protobuf_codec.encode([{"id": 2, "subscribe": {"channel": self.args.channel}}])
                )
            elif reply.startswith(b"\x08\x02"):
                self.set_ready()


class SocketIoReceiver(WebSocketReceiver):
    def on_message(self, payload: bytes) -> None:
        if payload.startswith(b"42"):
            self.count(1, payload)
        elif payload.startswith(b"40"):
            self.set_ready()
        elif payload.startswith(b"0"):
            self.send(b"40")
        elif payload == b"2":
            self.send(b"3")


class SseReceiver(Receiver):
    """Pushpin's SSE stream: counts ``data:`` lines in the raw (chunked) body."""

    def request(self) -> bytes:
        url = urlsplit(self.args.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        return (
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()

    def opened(self) -> None:
        self.set_ready()

    def on_data(self, data: bytes) -> None:
        # The last bytes of the previous read: a ``data:`` split across reads counts once.
        joined = bytes(self.buffer) + data
        self.count(joined.count(b"data:"), joined)
        self.buffer[:] = joined[-4:]


KINDS: dict[str, type[Receiver]] = {
    "skyrelay": SkyrelayReceiver,
    "skyrelay-protobuf": SkyrelayProtobufReceiver,
    "socketio": SocketIoReceiver,
    "pushpin": SseReceiver,
}


async def open_one(
    args: argparse.Namespace, counter: Counter, index: int, slots: asyncio.Semaphore
) -> None:
    url = urlsplit(args.url)
    loop = asyncio.get_running_loop()
    for _ in range(CONNECT_ATTEMPTS):
        async with slots:
            _, receiver = await loop.create_connection(
                lambda: KINDS[args.kind](args, counter, index), url.hostname, url.port
            )
            refused = await receiver.settled
        if not refused:
            return
        await asyncio.sleep(RETRY_PAUSE)
    raise RuntimeError(f"{args.kind} refused connection {index}")


async def main(args: argparse.Namespace) -> None:
    counter = Counter(args.connections, args.expect)
    slots = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    started, cpu = time.monotonic(), time.process_time()
    openers = []
    for i in range(args.connections):
        openers.append(asyncio.ensure_future(open_one(args, counter, i, slots)))
        if args.ramp and i % args.ramp == args.ramp - 1:
            await asyncio.sleep(RETRY_PAUSE)
    await asyncio.wait_for(asyncio.gather(*openers), CONNECT_TIMEOUT)
    # Seconds to connect everything, and CPU seconds this process spent on it.
    print(f"ready {time.monotonic() - started:.3f} {time.process_time() - cpu:.3f}", flush=True)
    if args.expect:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(counter.all_complete.wait(), args.timeout)
        if not counter.all_complete.is_set():
            counter.cpu_last = time.process_time()
    print(
        json.dumps(
            {
                "received": counter.received,
                "complete": counter.complete,
                "first": counter.first,
                "last": counter.last,
                # CPU seconds spent receiving: next to last - first, it shows whether this
                # load generator kept up or was itself the bottleneck.
                "cpu": counter.cpu_last - counter.cpu_first,
                "latencies": counter.latencies,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--channel", default="bench")
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--ramp", type=int, default=0, help="pause 100 ms after each N connects")
    parser.add_argument("--deflate", action="store_true", help="ask for permessage-deflate")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
