"""The public client: ``async with Client(edges, token=...) as client``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from skyrelay.client import json_codec, protobuf_codec
from skyrelay.client import session as s
from skyrelay.client.backoff import backoff_delay
from skyrelay.client.connection import Connection
from skyrelay.client.crypto import Keyring
from skyrelay.client.edges import EdgeRanking
from skyrelay.client.errors import ClientClosed, ClientError, DecryptionError, ReplyError
from skyrelay.client.events import (
    ClientEvent,
    Connected,
    DecryptionFailed,
    Disconnected,
    Publication,
    PublishFailed,
    Unrecovered,
)
from skyrelay.client.polling import ConnectionLost
from skyrelay.client.settings import TRANSPORT_ORDER, ClientSettings
from skyrelay.client.store import AsyncStore, Queued, Store
from skyrelay.client.subscription import Subscription
from skyrelay.protocol.codec import ClientCodec

log = logging.getLogger("skyrelay.client")

# Outbox rows read from the state file at a time.
OUTBOX_BATCH = 100
# The wire formats of ``protocol``. Long-poll has its own JSON requests whatever is chosen.
CODECS: dict[str, ClientCodec] = {"json": json_codec, "protobuf": protobuf_codec}

Since = tuple[str, int] | int | None


class Client:
    """A client that keeps itself connected to the nearest healthy edge.

    ``edges``: edge URLs (``http://host:port`` or their WebSocket URLs). ``token`` or
    ``get_token`` (called again when the edge says the token expired). ``state``: a SQLite
    file for positions, the outbox and transport memory (None keeps them in memory).
    ``keys``: end-to-end keys per channel. ``protocol``: the wire format, ``json`` or
    ``protobuf`` (fewer bytes; the app sees the same values). ``network``: a name for the
    network the device is on (Wi-Fi name, "cellular"); the transport that worked is remembered
    per network.
    """

    def __init__(
        self,
        edges: Sequence[str],
        *,
        token: str = "",
        get_token: Callable[[], Awaitable[str]] | None = None,
        state: str | Path | None = None,
        keys: Keyring | None = None,
        settings: ClientSettings | None = None,
        transports: Sequence[str] = TRANSPORT_ORDER,
        protocol: str = "json",
        network: str = "default",
        on_event: Callable[[ClientEvent], None] | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        unknown = [t for t in transports if t not in TRANSPORT_ORDER]
        if unknown or not transports:
            raise ValueError(f"transports: choose from {', '.join(TRANSPORT_ORDER)}")
        self.settings = settings or ClientSettings()
        # Always a keyring: without keys, sealed publications still come out as clear errors.
        self.keys = keys if keys is not None else Keyring()
        self.network = network
        self._ranking = EdgeRanking(list(edges), self.settings.edge_cooldown)
        self._token = token
        self._get_token = get_token
        self._transports = list(transports)
        self._user_on_event = on_event
        self._http = http
        self._own_http = http is None
        self._store = AsyncStore(state)
        if protocol not in CODECS:
            raise ValueError(f"protocol: choose from {', '.join(CODECS)}")
        self._session = s.Session(self.settings.name, CODECS[protocol])
        self._subs: dict[str, Subscription] = {}
        self._saved: dict[str, tuple[str, int]] = {}
        self._dirty: dict[str, tuple[str, int]] = {}
        self._outbox_wake = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._halted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: Connection | None = None
        self._closed = False

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # State.

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise ClientError("client not started")
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected.is_set()

    @property
    def edge(self) -> str:
        """The edge the client is on now (or was on last)."""
        return self.connection.edge

    @property
    def transport(self) -> str:
        return self.connection.transport

    async def wait_connected(self) -> None:
        await self.connection.connected.wait()

    # Lifecycle.

    async def start(self) -> None:
        await self._store.open()
        self._saved = await self._store.call(Store.positions)
        remembered = await self._store.call(Store.transport, self.network)
        order = list(self._transports)
        if remembered is not None and remembered[0] in order:
            name, updated = remembered
            if time.time() - updated < self.settings.transport_memory:
                order = [name, *(t for t in order if t != name)]
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._conn = Connection(
            ranking=self._ranking,
            session=self._session,
            settings=self.settings,
            http=self._http,
            transports=order,
            token=self._fetch_token,
            on_event=self._on_session_event,
            on_client_event=self._on_client_event,
            on_transport=self._remember_transport,
            refreshable=self._get_token is not None,
        )
        running = asyncio.ensure_future(self._conn.run())
        running.add_done_callback(self._stopped)
        self._tasks = [
            running,
            asyncio.ensure_future(self._send_outbox()),
            asyncio.ensure_future(self._save_positions()),
        ]

    def _stopped(self, _: object) -> None:
        """The connection loop is over: closed, or refused for good (then ``fatal``)."""
        fatal = self.connection.fatal
        if fatal is not None:
            for sub in self._subs.values():
                sub.end(error=fatal)
        self._halted.set()

    async def close(self) -> None:
        """Stop; what is still queued stays in the state file for the next start."""
        if self._closed:
            return
        self._closed = True
        for sub in self._subs.values():
            sub.commit()
            sub.end()
        if self._conn is not None:
            await self._conn.close()
        self._outbox_wake.set()  # the sender sees _closed even if its cancel were lost
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush_positions()
        await self._store.close()
        if self._own_http and self._http is not None:
            await self._http.close()

    # Subscribing.

    async def subscribe(self, channel: str, *, since: Since = None) -> Subscription:
        """Follow ``channel``. Without ``since`` it continues from the position saved in the
        state file, else from now. ``since`` is an offset (0 = the whole history) or
        ``(epoch, offset)``. Returns at once: the subscription goes live when connected."""
        if self._closed:
            raise ClientClosed()
        if channel in self._subs:
            raise ClientError(f"already subscribed to {channel!r}")
        sub = Subscription(channel, self._consumed, self._unsubscribe, self.settings.queue_warning)
        self._subs[channel] = sub
        if since is None:
            saved = self._saved.get(channel)
            epoch, offset = saved if saved is not None else ("", None)
        elif isinstance(since, int):
            epoch, offset = "", since
        else:
            epoch, offset = since
        self._session.subscribe(channel, epoch, offset)
        self.connection.kick()
        return sub

    async def _unsubscribe(self, channel: str) -> None:
        sub = self._subs.pop(channel, None)
        if sub is not None:
            sub.commit()
            sub.end()
            self._session.unsubscribe(channel)
            self.connection.kick()

    def _consumed(self, channel: str, epoch: str, offset: int) -> None:
        self._dirty[channel] = (epoch, offset)

    async def _save_positions(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_flush_interval)
            await self._flush_positions()

    async def _flush_positions(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            self._saved.update(dirty)
            await self._store.call(Store.save_positions, dirty)

    # Publishing.

    async def publish(self, channel: str, data: Any) -> str:
        """Queue ``data`` for ``channel`` in the outbox (durable once this returns) and send
        it when connected, in order, exactly once. Returns its idempotency key."""
        if self._closed:
            raise ClientClosed()
        if self.keys.encrypted(channel):
            data = self.keys.seal(channel, data)
        key = uuid.uuid4().hex
        await self._store.call(Store.enqueue, channel, orjson.dumps(data), key, time.time())
        self._outbox_empty.clear()
        self._outbox_wake.set()
        return key

    async def flush(self) -> None:
        """Until every queued publication was acknowledged (or refused for good). Raises
        ``ConnectionRefused`` if the edge refused the client for good meanwhile."""
        self._outbox_wake.set()
        empty = asyncio.ensure_future(self._outbox_empty.wait())
        halted = asyncio.ensure_future(self._halted.wait())
        try:
            await asyncio.wait((empty, halted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            empty.cancel()
            halted.cancel()
        if not self._outbox_empty.is_set():
            raise self.connection.fatal or ClientClosed()

    async def queued(self) -> int:
        """Publications in the outbox."""
        return await self._store.call(Store.queued_count)

    async def _send_outbox(self) -> None:
        while not self._closed:
            items = await self._store.call(Store.queued, OUTBOX_BATCH)
            if not items:
                self._outbox_empty.set()
                self._outbox_wake.clear()
                await self._outbox_wake.wait()
                continue
            for item in items:
                await self._send_one(item)

    async def _send_one(self, item: Queued) -> None:
        params = {
            "channel": item.channel,
            "data": orjson.Fragment(item.data),
            "idempotency_key": item.key,
        }
        attempt = 0
        while True:
            await self.connection.connected.wait()
            try:
                await self.connection.request("publish", params)
            except ConnectionLost:
                await asyncio.sleep(0)  # the connection is being replaced
                continue
            except ReplyError as exc:
                if exc.temporary:
                    attempt += 1
                    b = self.settings
                    await asyncio.sleep(backoff_delay(attempt, b.backoff_min, b.backoff_max))
                    continue
                log.warning("publication to %s refused: %s", item.channel, exc)
                self._emit(PublishFailed(item.channel, item.key, exc))
            await self._store.call(Store.sent, item.seq)
            return

    # Events.

    async def _fetch_token(self, refresh: bool) -> str:
        if self._get_token is not None and (refresh or not self._token):
            self._token = await self._get_token()
        return self._token

    async def _remember_transport(self, name: str) -> None:
        await self._store.call(Store.remember_transport, self.network, name, time.time())

    def _emit(self, event: ClientEvent) -> None:
        if self._user_on_event is not None:
            try:
                self._user_on_event(event)
            except Exception:
                log.exception("on_event failed")

    def _on_client_event(self, event: ClientEvent) -> None:
        if isinstance(event, Disconnected):
            for sub in self._subs.values():
                sub.set_unsubscribed()
        elif isinstance(event, Connected):
            self._outbox_wake.set()
        self._emit(event)

    def _on_session_event(self, event: s.Event) -> None:
        sub = self._subs.get(getattr(event, "channel", ""))
        if sub is None:
            return
        if isinstance(event, s.Deliver):
            sub.put(self._publication(event))
        elif isinstance(event, s.Subscribed):
            sub.set_subscribed(event.recovered)
        elif isinstance(event, s.Lost):
            sub.put(Unrecovered(event.channel, event.epoch, event.offset))
        elif isinstance(event, s.Ended):
            del self._subs[event.channel]
            sub.end(event.code, event.reason)
        elif isinstance(event, s.RetrySubscribe):
            log.info("subscribe to %s failed for now: %s", event.channel, event.error)

    def _publication(self, event: s.Deliver) -> Publication | DecryptionFailed:
        pub = event.pub
        offset = int(pub.get("offset", 0))
        data = pub.get("data")
        try:
            data = self.keys.open(event.channel, data)
        except DecryptionError as exc:
            return DecryptionFailed(event.channel, offset, exc, event.epoch)
        return Publication(
            event.channel, offset, data, event.epoch, pub.get("info"), pub.get("tags")
        )
