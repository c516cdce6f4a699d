"""A load generator process: many subscribers to one channel of one server, counting what they
receive. Run by the benchmark scenarios (never the bottleneck: cheap parsing, one task per
connection, several processes).

    python -m benchmarks.receivers --kind skyrelay --url ws://... --token T --channel C \\
        --connections N --expect M

Prints ``ready`` once every connection is subscribed, then one JSON line with the counts and a
sample of publish-to-receive latencies (messages carry their send time as ``t``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import aiohttp

# Latency samples kept per process.
LATENCY_SAMPLE = 20_000
# Seconds to connect everything, and to wait for the expected messages.
CONNECT_TIMEOUT = 120.0
_T = re.compile(r'"t":\s*([0-9.]+)')


class Counter:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.received = 0
        self.first = 0.0
        self.last = 0.0
        # CPU seconds this process had used at the first and at the last message.
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.complete = 0

    def got(self, text: str) -> None:
        now = time.time()
        if not self.received:
            self.first = now
            self.cpu_first = time.process_time()
        self.received += 1
        self.last = now
        self.cpu_last = time.process_time()
        if len(self.latencies) < LATENCY_SAMPLE:
            match = _T.search(text)
            if match:
                self.latencies.append(now - float(match.group(1)))


async def skyrelay(
    session: aiohttp.ClientSession, args: argparse.Namespace, counter: Counter, ready: asyncio.Event
) -> None:
    ws = await session.ws_connect(args.url, compress=0, max_msg_size=0)
    commands = [
        {"id": 1, "connect": {"token": args.token}},
        {"id": 2, "subscribe": {"channel": args.channel}},
    ]
    await ws.send_str("\n".join(json.dumps(c) for c in commands))
    seen = 0
    async for msg in ws:
        for line in msg.data.split("\n"):
            if line.startswith('{"push"'):
                counter.got(line)
                seen += 1
            elif line == "{}":
                await ws.send_str("{}")
            elif '"subscribe"' in line:
                ready.set()
            elif line.startswith('{"id":2,"error"'):
                # A temporary error (a busy edge's link dropped during a connect storm): retry.
                await ws.send_str(json.dumps(commands[1]))
        if seen >= args.expect:
            break
    counter.complete += 1


async def socketio(
    session: aiohttp.ClientSession, args: argparse.Namespace, counter: Counter, ready: asyncio.Event
) -> None:
    ws = await session.ws_connect(args.url, compress=0, max_msg_size=0)
    seen = 0
    async for msg in ws:
        data = msg.data
        if data.startswith("0"):
            await ws.send_str("40")
        elif data.startswith("40"):
            ready.set()
        elif data == "2":
            await ws.send_str("3")
        elif data.startswith("42"):
            counter.got(data)
            seen += 1
            if seen >= args.expect:
                break
    counter.complete += 1


async def pushpin(
    session: aiohttp.ClientSession, args: argparse.Namespace, counter: Counter, ready: asyncio.Event
) -> None:
    for _ in range(50):  # Pushpin answers some connections 502 under bursts: retry
        resp = await session.get(args.url, timeout=aiohttp.ClientTimeout(total=None))
        if resp.status == 200:
            break
        resp.release()
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("pushpin refused the connection")
    ready.set()
    seen = 0
    async for raw in resp.content:
        line = raw.decode()
        if line.startswith("data:"):
            counter.got(line)
            seen += 1
            if seen >= args.expect:
                break
    counter.complete += 1


KINDS = {"skyrelay": skyrelay, "socketio": socketio, "pushpin": pushpin}


async def main(args: argparse.Namespace) -> None:
    counter = Counter(args.expect)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        readies = []
        tasks = []
        started = time.monotonic()
        for i in range(args.connections):
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.ensure_future(KINDS[args.kind](session, args, counter, ready)))
            if args.ramp and i % args.ramp == args.ramp - 1:
                await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), CONNECT_TIMEOUT)
        print(f"ready {time.monotonic() - started:.3f}", flush=True)
        _, pending = await asyncio.wait(tasks, timeout=args.timeout)
        for task in pending:
            task.cancel()
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
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
