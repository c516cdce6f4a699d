"""Keeps one connection up: picks the edge and the transport, reconnects with backoff, and
moves bytes between the transport and the session. Events the app cares about go to
``on_event`` (subscription events) and ``on_client_event`` (connection state)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from skyrelay.client import session as s
from skyrelay.client.backoff import backoff_delay
from skyrelay.client.edges import EdgeRanking
from skyrelay.client.errors import ClientClosed, ConnectionRefused, ProtocolError, ReplyError
from skyrelay.client.events import ClientEvent, Connected, Connecting, Disconnected
from skyrelay.client.polling import ConnectionLost, Poller
from skyrelay.client.settings import ClientSettings
from skyrelay.client.transports import (
    EdgeUnreachable,
    HttpStreamTransport,
    Transport,
    TransportClosed,
    TransportRefused,
    WebSocketTransport,
    probe,
)
from skyrelay.protocol.codes import (
    ABNORMAL_CLOSURE,
    CLIENT_INTERNAL,
    DisconnectCode,
    ErrorCode,
    reconnects,
)

log = logging.getLogger("skyrelay.client")

# Codes that say "this edge, not you": try another edge first.
_EDGE_TROUBLE = {
    ABNORMAL_CLOSURE,
    DisconnectCode.SHUTDOWN,
    DisconnectCode.SERVER_ERROR,
    DisconnectCode.TOO_MANY_REQUESTS,
}
# Share of a token's lifetime after which it is refreshed.
REFRESH_AT = 0.8
# Ping interval assumed when the edge advertises none (the protocol's default), in seconds.
DEFAULT_PING = 25
# (http, edge, first message, seconds, protobuf) -> an open transport.
Opener = Callable[[aiohttp.ClientSession, str, bytes, float, bool], Awaitable[Transport]]
_OPENERS: dict[str, Opener] = {
    "websocket": WebSocketTransport.open,
    "http_stream": HttpStreamTransport.open,
}


class Connection:
    def __init__(
        self,
        *,
        ranking: EdgeRanking,
        session: s.Session,
        settings: ClientSettings,
        http: aiohttp.ClientSession,
        transports: Sequence[str],
        token: Callable[[bool], Awaitable[str]],
        on_event: Callable[[s.Event], None],
        on_client_event: Callable[[ClientEvent], None],
        on_transport: Callable[[str], Awaitable[None]],
        refreshable: bool = False,
    ) -> None:
        self.ranking = ranking
        self.session = session
        self.settings = settings
        self.http = http
        self.transports = list(transports)
        self.token = token
        self._on_event = on_event
        self._on_client_event = on_client_event
        self._on_transport = on_transport
        # True when the token can be fetched again: then it is refreshed before it expires.
        self._refreshable = refreshable
        self._ttl = 0
        self.edge = ""
        self.transport = ""
        self.client_id = ""
        self.connected = asyncio.Event()
        self.fatal: Exception | None = None
        self.wake = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._end: asyncio.Future[tuple[int, str]] | None = None
        self._probed_at = -float("inf")
        self._closing = False
        self.poller = Poller(self)

    # Used by the client.

    def kick(self) -> None:
        """The session has something to send (or its subscriptions changed)."""
        self.wake.set()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run a command on the current connection; ``ConnectionLost`` if it goes first."""
        if not self.connected.is_set():
            raise ConnectionLost
        if self.transport == "longpoll":
            return await self.poller.request(method, params)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[self.session.command(method, params)] = future
        self.kick()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands together with the reply, and the caller would never stop.
            async with asyncio.timeout(self.settings.command_timeout):
                return await future
        except TimeoutError:
            self.drop(0, "command timed out")
            raise ConnectionLost from None

    def drop(self, code: int, reason: str) -> None:
        """End the current connection; the client reconnects."""
        if self._end is not None and not self._end.done():
            self._end.set_result((code, reason))

    async def close(self) -> None:
        self._closing = True
        self.drop(0, "client closed")

    # The loop.

    async def run(self) -> None:
        attempt, delay = 0, 0.0
        while not self._closing:
            if delay:
                await asyncio.sleep(delay)
            try:
                stable = await self._round(attempt, delay)
            except ConnectionRefused as exc:
                self.fatal = exc
                log.error("connection refused for good: %s", exc)
                break
            attempt = 0 if stable else attempt + 1
            delay = backoff_delay(attempt, self.settings.backoff_min, self.settings.backoff_max)
        self._fail_waiters(ClientClosed() if self.fatal is None else self.fatal)

    async def _round(self, attempt: int, delay: float) -> bool:
        """Walk the edges, best first, and each edge's transports; serve the first that
        connects. True when that connection lasted long enough to reset the backoff."""
        await self._probe_if_stale()
        for edge in self.ranking.order(time.monotonic()):
            for name in self.transports:
                if self._closing:
                    return True
                loop = asyncio.get_running_loop()
                self._on_client_event(Connecting(edge, name, attempt, delay, loop.time()))
                try:
                    transport = await self._open(edge, name)
                except EdgeUnreachable as exc:
                    log.info("edge %s unreachable: %s", edge, exc)
                    self.ranking.record_failure(edge, time.monotonic())
                    self._probed_at = -float("inf")
                    break
                except TransportRefused as exc:
                    log.info("edge %s refused %s: %s", edge, name, exc)
                    continue
                return await self._serve(edge, name, transport)
        return False

    async def _probe_if_stale(self) -> None:
        if time.monotonic() - self._probed_at < self.settings.reprobe_interval:
            return
        await self.probe()

    async def probe(self) -> None:
        edges = list(self.ranking.edges)
        rtts = await asyncio.gather(
            *(probe(self.http, e, self.settings.probe_timeout) for e in edges)
        )
        for edge, rtt in zip(edges, rtts, strict=True):
            self.ranking.record_probe(edge, rtt)
        self._probed_at = time.monotonic()

    async def _open(self, edge: str, name: str) -> Transport | None:
        """Open ``name`` on ``edge`` and finish the handshake (the connect reply). Returns
        None for long-poll, which holds no connection."""
        if name == "longpoll":
            await self.poller.handshake(edge)
            return None
        token = await self.token(False)
        first = self.session.start(token)
        opener = _OPENERS[name]
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                transport: Transport = await opener(
                    self.http,
                    edge,
                    first,
                    self.settings.connect_timeout,
                    self.session.codec.NAME == "protobuf",
                )
        except TimeoutError:
            raise EdgeUnreachable("no answer in time") from None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                while not self.session.connected:
                    events = self.session.receive(await transport.recv())
                    self.dispatch(events, handshake=True)
        except TimeoutError:
            await transport.close()
            raise TransportRefused("no connect reply in time") from None
        except TransportClosed as exc:
            await transport.close()
            if not reconnects(exc.code):
                raise ConnectionRefused(exc.code, exc.reason) from None
            raise EdgeUnreachable(f"closed during connect: {exc}") from None
        except ReplyError as exc:
            await transport.close()
            await self.connect_failed(exc)
            raise EdgeUnreachable(f"connect failed: {exc}") from None
        except ProtocolError as exc:
            await transport.close()
            raise TransportRefused(str(exc)) from None
        return transport

    async def connect_failed(self, error: ReplyError) -> None:
        if error.code == ErrorCode.TOKEN_EXPIRED:
            await self.token(True)  # a fresh one for the next attempt
        elif not error.temporary:
            raise ConnectionRefused(error.code, error.message)

    def dispatch(self, events: list[s.Event], handshake: bool = False) -> None:
        for event in events:
            if isinstance(event, s.ConnectFailed):
                raise event.error
            if isinstance(event, s.ConnectOk):
                self.client_id = event.client_id
                self._ttl = int(event.result.get("ttl", 0)) if event.result.get("expires") else 0
            elif isinstance(event, s.Done):
                future = self._waiters.pop(event.id, None)
                if future is not None and not future.done():
                    if event.error is not None:
                        future.set_exception(event.error)
                    else:
                        future.set_result(event.result)
            elif isinstance(event, s.ServerDisconnect):
                self.drop(event.code, event.reason)
            elif isinstance(event, s.RetrySubscribe):
                delay = backoff_delay(1, self.settings.backoff_min, self.settings.backoff_max)
                asyncio.get_running_loop().call_later(delay, self._resubscribe)
                self._on_event(event)
            else:
                self._on_event(event)

    def _resubscribe(self) -> None:
        self.session.subscribe_wanted()
        self.kick()

    async def _serve(self, edge: str, name: str, transport: Transport | None) -> bool:
        started = time.monotonic()
        self.edge, self.transport = edge, name
        self.ranking.record_success(edge)
        self._end = asyncio.get_running_loop().create_future()
        self.connected.set()
        self._on_client_event(Connected(edge, name, self.client_id))
        await self._on_transport(name)
        if transport is None:
            work = [self.poller.run(edge)]
        else:
            work = [self._read_loop(transport), self._write_loop(transport)]
            if self._refreshable and self._ttl:
                work.append(self._refresh_loop(self._ttl))
        tasks = [asyncio.ensure_future(w) for w in (*work, self._reprobe_loop(edge))]
        try:
            code, reason = await self._end
        finally:
            self.connected.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()
            lost = self.session.connection_lost()
            self._fail_waiters(ConnectionLost(), lost)
        final = not reconnects(code)
        if code in _EDGE_TROUBLE:
            self.ranking.record_failure(edge, time.monotonic())
        log.info("disconnected from %s (%s): %s %s", edge, name, code, reason)
        self._on_client_event(Disconnected(edge, code, reason, not final and not self._closing))
        if final:
            raise ConnectionRefused(code, reason)
        return time.monotonic() - started >= self.settings.backoff_reset_after

    def _fail_waiters(self, error: Exception, ids: Sequence[int] | None = None) -> None:
        for i in list(self._waiters) if ids is None else ids:
            future = self._waiters.pop(i, None)
            if future is not None and not future.done():
                future.set_exception(error)

    async def _read_loop(self, transport: Transport) -> None:
        silence = float(self.session.ping or DEFAULT_PING) + self.settings.ping_grace
        try:
            while True:
                async with asyncio.timeout(silence):
                    data = await transport.recv()
                self.dispatch(self.session.receive(data))
                if self.session.has_outgoing():
                    self.kick()
        except TimeoutError:
            self.drop(0, "no ping from the edge")
        except TransportClosed as exc:
            self.drop(exc.code, exc.reason)
        except (ProtocolError, ReplyError) as exc:
            self.drop(0, str(exc))

    async def _write_loop(self, transport: Transport) -> None:
        try:
            while True:
                data = self.session.take_outgoing()
                if data:
                    await transport.send(data)
                    continue
                await self.wake.wait()
                self.wake.clear()
        except TransportClosed as exc:
            self.drop(exc.code, exc.reason)

    async def _refresh_loop(self, ttl: int) -> None:
        """Send a fresh token before the current one expires (the edge would close 3005)."""
        while ttl:
            await asyncio.sleep(max(1.0, ttl * REFRESH_AT))
            try:
                result = await self.request("refresh", {"token": await self.token(True)})
            except (ConnectionLost, ReplyError) as exc:
                log.warning("token refresh failed: %s", exc)
                return
            ttl = int(result.get("ttl", 0)) if result.get("expires") else 0

    async def _reprobe_loop(self, edge: str) -> None:
        while True:
            await asyncio.sleep(self.settings.reprobe_interval)
            await self.probe()
            better = self.ranking.better_than(edge, self.settings.switch_gain)
            if better is not None:
                self.drop(CLIENT_INTERNAL, f"moving to the faster edge {better}")
