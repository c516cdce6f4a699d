"""End-to-end check of the peer servers on free loopback ports.

    python -m skyrelay.benchmarks.peers.selfcheck [socketio|pushpin|all] [--clients N] [--count N]

socketio: N raw Engine.IO v4 WebSocket clients join room "bench", ``POST /publish`` with
``count``, and each client must get exactly ``count`` ``42["message",...]`` frames.
pushpin: an SSE origin and Pushpin start, N SSE clients subscribe through Pushpin (ramped, 500s
and 502s retried), ``count`` items are published, and each client must get exactly ``count``
events.
Every process started here is stopped by its PID at the end; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from skyrelay.benchmarks.peers import pushpin

HOST = "127.0.0.1"
STEP_TIMEOUT = 20.0  # Deadline for any single wait (startup, connect, delivery).
CONNECT_ATTEMPTS = 20  # Tries per SSE client when Pushpin answers 500/502.
RAMP_DELAY = 0.01  # Between new connections: Pushpin 1.36 answers some bursts with 500/502.
# Pushpin's overload answers: 502 "Error while proxying to origin" (proxy-to-zurl queue full),
# 500 "Accept service unavailable" (proxy-to-handler handoff not available).
RETRY_STATUSES = frozenset({500, 502})


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_port_offset(candidates: range = range(0, 2000, 100)) -> int:
    """A Pushpin port_offset whose ZeroMQ/publish ports (5560-5563 + offset) are free."""
    for offset in candidates:
        if pushpin.ports_free(offset):
            return offset
    raise RuntimeError("no free Pushpin port offset")


def start_python_peer(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m <args>`` with stderr to ``log`` and wait for its "ready" line."""
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], stdin=subprocess.DEVNULL, stdout=f, stderr=f
        )
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited early: {log.read_text()[-2000:]}")
        if b"ready" in log.read_bytes():
            return proc
        time.sleep(0.05)
    stop(proc)
    raise TimeoutError(f"{args[0]} not ready within {STEP_TIMEOUT}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM one process we started, SIGKILL it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- socket.io ----------------------------------------------------------------------------


async def _receive_text(ws: aiohttp.ClientWebSocketResponse, wait: float) -> str | None:
    """The next text frame, or None on timeout or when the socket closes."""
    try:
        msg = await ws.receive(timeout=wait)
    except TimeoutError:
        return None
    return msg.data if msg.type == aiohttp.WSMsgType.TEXT else None


async def sio_client(
    session: aiohttp.ClientSession, port: int, joined: asyncio.Event, want: int
) -> int:
    """Join over raw Engine.IO v4 and count "message" events until ``want`` or a quiet spell."""
    url = f"ws://{HOST}:{port}/socket.io/?EIO=4&transport=websocket"
    got = 0
    async with session.ws_connect(url, compress=0) as ws:
        opened = await _receive_text(ws, STEP_TIMEOUT)
        assert opened and opened.startswith("0{"), opened  # Engine.IO open: sid, ping times.
        await ws.send_str("40")  # Socket.IO CONNECT to the default namespace.
        linger_until: float | None = None
        deadline = time.monotonic() + STEP_TIMEOUT * 3
        while time.monotonic() < deadline:
            if got >= want and joined.is_set() and linger_until is None:
                # Linger briefly so extra (duplicate) frames would be counted too.
                linger_until = time.monotonic() + 0.3
            limit = (linger_until or deadline) - time.monotonic()
            frame = await _receive_text(ws, limit) if limit > 0 else None
            if frame is None:
                break
            if frame == "2":  # Engine.IO ping: answer or the server drops us.
                await ws.send_str("3")
            elif frame.startswith("40"):  # CONNECT ack: sent after the connect handler ran.
                joined.set()
            elif frame.startswith("42") and json.loads(frame[2:])[0] == "message":
                got += 1
    return got


async def check_socketio(clients: int, count: int, workdir: Path) -> None:
    port = free_port()
    proc = start_python_peer(
        ["skyrelay.benchmarks.peers.socketio_server", "--port", str(port)], workdir / "socketio.log"
    )
    try:
        conn = aiohttp.TCPConnector(limit=0)  # Default cap is 100 connections per session.
        async with aiohttp.ClientSession(connector=conn) as session:
            joins = [asyncio.Event() for _ in range(clients)]
            tasks = [asyncio.create_task(sio_client(session, port, e, count)) for e in joins]
            try:
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in joins)), STEP_TIMEOUT)
            except TimeoutError as exc:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                missing = sum(not e.is_set() for e in joins)
                raise RuntimeError(f"{missing} clients never joined") from exc
            async with session.post(
                f"http://{HOST}:{port}/publish", json={"data": {"n": 1}, "count": count}
            ) as resp:
                assert resp.status == 200 and (await resp.json()) == {"ok": True}, resp.status
            counts = await asyncio.wait_for(asyncio.gather(*tasks), STEP_TIMEOUT * 2)
        assert counts == [count] * clients, counts
        print(f"socketio ok: {clients} clients x {count} messages = {sum(counts)} deliveries")
    finally:
        stop(proc)


# --- Pushpin ------------------------------------------------------------------------------


async def sse_connect(
    session: aiohttp.ClientSession, url: str, stats: dict[str, int]
) -> aiohttp.ClientResponse:
    """Open an SSE stream through Pushpin, retrying its 500s/502s with a growing pause."""
    for attempt in range(CONNECT_ATTEMPTS):
        resp = await session.get(url, timeout=aiohttp.ClientTimeout(total=None, connect=5))
        if resp.status == 200:
            return resp
        resp.release()
        stats[str(resp.status)] = stats.get(str(resp.status), 0) + 1
        if resp.status not in RETRY_STATUSES:
            raise RuntimeError(f"unexpected status {resp.status}")
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    raise RuntimeError(f"still 500/502 after {CONNECT_ATTEMPTS} attempts")


async def sse_count(
    resp: aiohttp.ClientResponse,
    seen_probe: asyncio.Event,
    want: int,
    progress: list[int],
    index: int,
) -> int:
    """Count ``data: msg`` events until ``want``, then linger briefly to catch extras.

    The running count is kept in ``progress[index]`` so the publisher can pace itself.
    """
    got = 0
    deadline = time.monotonic() + STEP_TIMEOUT * 2
    linger_until: float | None = None
    while time.monotonic() < deadline:
        if got >= want and linger_until is None:
            linger_until = time.monotonic() + 0.3
        limit = (linger_until or deadline) - time.monotonic()
        if limit <= 0:
            break
        try:
            line = await asyncio.wait_for(resp.content.readline(), limit)
        except TimeoutError:
            break
        if not line:
            break
        if line.startswith(b"data: probe"):
            seen_probe.set()
        elif line.startswith(b"data: msg"):
            got += 1
            progress[index] = got
    resp.close()
    return got


async def check_pushpin(clients: int, count: int, workdir: Path) -> None:
    http_port, origin_port, offset = free_port(), free_port(), free_port_offset()
    origin = start_python_peer(
        ["skyrelay.benchmarks.peers.pushpin", "origin", "--port", str(origin_port)],
        workdir / "origin.log",
    )
    proc = pushpin.start_pushpin(workdir / "pushpin", http_port, origin_port, offset)
    try:
        pushpin.wait_pushpin_ready(proc, http_port, offset, STEP_TIMEOUT)
        conn = aiohttp.TCPConnector(limit=0)  # One connection per subscriber, no pooling cap.
        async with aiohttp.ClientSession(connector=conn) as session:
            stats: dict[str, int] = {}
            streams = []
            for i in range(clients):  # Ramp: one at a time, with a pause.
                streams.append(await sse_connect(session, f"http://{HOST}:{http_port}/s{i}", stats))
                await asyncio.sleep(RAMP_DELAY)
            probes = [asyncio.Event() for _ in streams]
            progress = [0] * len(streams)
            tasks = [
                asyncio.create_task(sse_count(r, probes[i], count, progress, i))
                for i, r in enumerate(streams)
            ]
            publish = pushpin.publish_url(offset)
            # Subscriptions settle asynchronously: probe until every client hears one.
            deadline = time.monotonic() + STEP_TIMEOUT
            while not all(e.is_set() for e in probes) and time.monotonic() < deadline:
                async with session.post(publish, data=pushpin.publish_body("probe", 1)) as r:
                    assert r.status == 200, r.status
                await asyncio.sleep(0.2)
            assert all(e.is_set() for e in probes), "not every client got a probe"
            sent = 0
            for body in pushpin.publish_bodies("msg", count):  # Each under Pushpin's 1 MB cap.
                async with session.post(publish, data=body) as r:
                    assert r.status == 200, (r.status, await r.text())
                sent += len(json.loads(body)["items"])
                # Pace: Pushpin's handler queues at most 100 items per stream that it cannot
                # write yet and drops the rest, so a second body sent while the first is still
                # being written loses messages. Wait until every client has caught up.
                for _ in range(int(STEP_TIMEOUT / 0.05)):  # Bounded poll, ~STEP_TIMEOUT.
                    if min(progress) >= sent:
                        break
                    await asyncio.sleep(0.05)
            counts = await asyncio.gather(*tasks)
        assert counts == [count] * clients, counts
        print(
            f"pushpin ok: {clients} clients x {count} messages = {sum(counts)} deliveries "
            f"(connect retries by status: {stats or 'none'}; port_offset {offset})"
        )
    finally:
        pushpin.stop_pushpin(proc)
        stop(origin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="End-to-end check of the peer servers")
    parser.add_argument("which", nargs="?", default="all", choices=["socketio", "pushpin", "all"])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--count", type=int, default=0, help="default: 5 socketio, 3 pushpin")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        if args.which in ("socketio", "all"):
            asyncio.run(check_socketio(args.clients, args.count or 5, Path(tmp)))
        if args.which in ("pushpin", "all"):
            asyncio.run(check_pushpin(args.clients, args.count or 3, Path(tmp)))


if __name__ == "__main__":
    main()
