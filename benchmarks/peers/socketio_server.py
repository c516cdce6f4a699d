"""A python-socketio peer: every client joins room "bench"; ``POST /publish`` broadcasts to it.

    python -m skyrelay.benchmarks.peers.socketio_server --port P

Raw clients speak Engine.IO v4 over ``/socket.io/?EIO=4&transport=websocket``: the server sends
the open packet (``0{...}``), the client sends ``40`` to join the default namespace, events
arrive as text frames ``42["message",<data>]``, and the client must answer each ping ``2``
with ``3`` or it is dropped after ping_interval + ping_timeout.

``POST /publish`` takes ``{"data": <any JSON>, "count": n}`` (count defaults to 1), emits
event "message" with ``data`` to room "bench" ``count`` times, awaiting each emit, and answers
``200 {"ok": true}`` once all emits are done.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web
from engineio.async_drivers import aiohttp as eio_aiohttp  # type: ignore[import-untyped]

from skyrelay.benchmarks.peers import run_async

ROOM = "bench"
HOST = "127.0.0.1"  # Loopback only: benchmarks never listen on any other address.
BACKLOG = 4096  # Many subscribers connect in a burst; the default backlog (128) drops SYNs.
MAX_COUNT = 1_000_000  # Upper bound on one publish request, so a typo cannot loop for hours.


class _UncompressedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp WebSocket wrapper with permessage-deflate off.

    python-engineio builds ``WebSocketResponse`` with aiohttp's default ``compress=True`` and has
    no option for it, so a client offering deflate (aiohttp's client does by default) would get
    every frame compressed. Skyrelay's edge defaults to ``websocket_compression = false``, so the
    comparison is fair only with deflate off here too.
    """

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def make_app() -> tuple[web.Application, socketio.AsyncServer]:
    """Build the aiohttp app with the Socket.IO server attached at ``/socket.io/``."""
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
    # Swap in the uncompressed wrapper. ``_async`` is the driver table python-engineio looks the
    # WebSocket class up in; copy it so the module-level table stays untouched.
    eio = sio.eio
    if isinstance(getattr(eio, "_async", None), dict) and "websocket" in eio._async:
        eio._async = {**eio._async, "websocket": _UncompressedWebSocket}
    else:  # A future python-engineio changed its internals: run with compression rather than fail.
        print("socketio_server: could not turn WebSocket compression off", file=sys.stderr)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # Runs before the CONNECT ack ("40{...}"), so a client that saw the ack is in the room.
        await sio.enter_room(sid, ROOM)

    sio.on("connect", connect)

    async def publish(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or "data" not in body:
            return web.json_response({"ok": False, "error": 'need {"data": ...}'}, status=400)
        count = body.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
            return web.json_response(
                {"ok": False, "error": f"count must be an int in 0..{MAX_COUNT}"}, status=400
            )
        data = body["data"]
        for _ in range(count):
            await sio.emit("message", data, room=ROOM)
        return web.json_response({"ok": True})

    app = web.Application()
    sio.attach(app)
    app.router.add_post("/publish", publish)
    return app, sio


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:``port`` until cancelled; print "ready" to stderr once listening."""
    app, _ = make_app()
    runner = web.AppRunner(app, access_log=None)  # Access logs would cost more than the emits.
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port, backlog=BACKLOG)
        await site.start()
        print("ready", file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # Until SIGTERM/SIGINT ends the process.
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="python-socketio peer for the benchmarks")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run_async(serve(args.port))


if __name__ == "__main__":
    main()
