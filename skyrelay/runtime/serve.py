"""Running an aiohttp application as a server process: uvloop, explicit socket settings, and a
graceful stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("skyrelay")

# Request head limits, set here rather than left to the library: past them a request gets
# 400 (431 for a header line) before any handler runs.
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 100
# Seconds the server goes on reading (and dropping) the unread rest of a body it has already
# answered (a 408 or 413), so the answer reaches a client still sending; then it closes.
LINGER_TIME = 2.0


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@dataclass(frozen=True, slots=True)
class Listen:
    """Where and how a process listens.

    ``header_timeout`` bounds how long a connection may take to send a request head (aiohttp
    counts it from the connection's start or its previous response, and calls it the
    keep-alive timeout): a slowloris client, or one that connects and says nothing, is cut.
    With ``ssl_context`` the port speaks TLS only. ``front`` wraps the HTTP server's protocol
    factory: the listener then makes each connection's protocol with it (the edge's own
    WebSocket path), and connections it hands on are the HTTP server's as usual."""

    host: str
    port: int
    backlog: int
    header_timeout: float
    reuse_port: bool = False
    shutdown_timeout: float = 5.0
    ssl_context: ssl.SSLContext | None = None
    front: Callable[[Callable[[], Any]], Callable[[], Any]] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the process does as it runs: ``on_listening`` once the port is bound,
    ``on_reload`` on SIGHUP (re-read the config: ring changes), ``on_stop`` on SIGTERM or
    SIGINT before the listener closes. ``announce`` prints the ``ready`` line (a supervisor
    prints its own)."""

    on_listening: Callable[[], Awaitable[None]] | None = None
    on_reload: Callable[[], None] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None
    announce: bool = True
    # Look at this config file every ``watch_interval`` seconds, and reload when it changed.
    config_path: str = ""
    watch_interval: float = 0.0


async def serve_until_stopped(app: web.Application, listen: Listen, hooks: Hooks = Hooks()) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then run ``hooks.on_stop`` and close."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=listen.header_timeout,
        # Kernel keepalive probes find peers that vanished without a FIN (half-open).
        tcp_keepalive=True,
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=MAX_HEADER_FIELD,
        max_headers=MAX_HEADERS,
        lingering_time=LINGER_TIME,
        shutdown_timeout=listen.shutdown_timeout,
    )
    await runner.setup()
    listener = await _start_listening(runner, listen)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher: asyncio.Task[None] | None = None
    if hooks.on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, _guarded(hooks.on_reload))
        if hooks.config_path and hooks.watch_interval > 0:
            watch = watch_config(hooks.config_path, hooks.watch_interval, hooks.on_reload)
            watcher = asyncio.create_task(watch)
    log.info("listening on %s", listen.url)
    try:
        if hooks.on_listening is not None:
            await hooks.on_listening()
        if hooks.announce:
            print(f"ready {listen.url}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        if listener is not None:
            # No new connections while draining. Not wait_closed(): from Python 3.12 on it
            # waits for every connection, and ``on_stop`` ends ours.
            listener.close()
        if hooks.on_stop is not None:
            await hooks.on_stop()
        await runner.cleanup()


async def _start_listening(runner: web.AppRunner, listen: Listen) -> asyncio.AbstractServer | None:
    """Bind the port: aiohttp's own site, or a listener whose connections start in
    ``listen.front`` (returned, so it can stop accepting before the drain)."""
    if listen.front is None:
        site = web.TCPSite(
            runner,
            listen.host,
            listen.port,
            backlog=listen.backlog,
            reuse_port=listen.reuse_port,
            ssl_context=listen.ssl_context,
        )
        await site.start()
        return None
    assert runner.server is not None
    return await asyncio.get_running_loop().create_server(
        listen.front(runner.server),
        listen.host,
        listen.port,
        backlog=listen.backlog,
        reuse_address=True,
        reuse_port=listen.reuse_port or None,
        ssl=listen.ssl_context,
    )


async def watch_config(path: str, interval: float, reload: Callable[[], None]) -> None:
    """Reload whenever the file's bytes change (a mounted ConfigMap is swapped in place,
    so its modification time alone is not to be trusted)."""
    last = _digest(path)
    while True:
        await asyncio.sleep(interval)
        now = _digest(path)
        if now is not None and now != last:
            last = now
            log.info("config file changed: reloading")
            _guarded(reload)()


def _digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).digest()
    except OSError:
        return None  # between a swap's two steps, say: look again next time


def _guarded(reload: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            reload()
        except Exception as exc:  # a bad new config must not take the process down
            log.error("reload failed, keeping the running config: %s", exc)

    return run
