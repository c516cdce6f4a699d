"""The origin shard process: edge links, links to the other shards, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skyrelay.config import ClusterConfig, load_config
from skyrelay.link import wire
from skyrelay.link.auth import CHALLENGE_PATH, Keyring
from skyrelay.link.client import LinkClient
from skyrelay.origin import amnesia, membership, readiness
from skyrelay.origin.handover import hand_over
from skyrelay.origin.link import PEERS_KEY, SHARD_KEY, SURVEYOR_KEY, PeerWriter, link_handler
from skyrelay.origin.link_guard import LINK_GUARD_KEY, LinkGuard
from skyrelay.origin.metrics import OriginMetrics
from skyrelay.origin.peer_links import PeerLinks
from skyrelay.origin.persistence import load_copies
from skyrelay.origin.shard import Shard
from skyrelay.origin.storage.store import ShardStore
from skyrelay.origin.survey import Surveyor
from skyrelay.ring import Ring
from skyrelay.ring.health import HealthView
from skyrelay.ring.prober import run_prober
from skyrelay.runtime.metrics import metrics_handler
from skyrelay.runtime.serve import Hooks, Listen, serve_until_stopped
from skyrelay.runtime.tls import server_context, shard_client_ssl

log = logging.getLogger("skyrelay.origin")

LINKS_KEY = web.AppKey("peer_links", dict[str, LinkClient])
HEALTH_KEY = web.AppKey("health", HealthView)
TASKS_KEY = web.AppKey("tasks", list[asyncio.Task[None]])
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
STARTED_KEY = web.AppKey("started", float)
READINESS_KEY = web.AppKey("readiness", readiness.Readiness)
# How https:// peers are verified; absent when no shard speaks TLS (aiohttp's default).
CLIENT_TLS_KEY = web.AppKey("client_tls", ssl.SSLContext)
KEYRING_KEY = web.AppKey("keyring", Keyring)
PEER_LINKS_KEY = web.AppKey("peer_link_manager", PeerLinks)


class ShardCollector(Collector):
    """Reads the shard's own counters at scrape time, so the hot path counts with plain ints."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        shard = self._app[SHARD_KEY]
        replicator = shard.replicator
        yield CounterMetricFamily(
            "skyrelay_origin_publications",
            "Publications committed (or pushed) by this shard as leader",
            value=shard.published,
        )
        yield GaugeMetricFamily(
            "skyrelay_origin_channels",
            "Channel replicas held by this shard",
            value=len(replicator.replicas),
        )
        yield GaugeMetricFamily(
            "skyrelay_origin_leading_channels",
            "Channels this shard leads",
            value=replicator.leading(),
        )
        yield CounterMetricFamily(
            "skyrelay_origin_takeovers",
            "Channels this shard took the lead of",
            value=replicator.takeovers,
        )
        lag, in_sync = 0, 0
        for rep in replicator.replicas.values():
            if rep.is_leader and rep.stream is not None:
                for progress in rep.followers.values():
                    behind = rep.stream.top - progress.match
                    lag = max(lag, behind)
                    in_sync += behind == 0
        yield GaugeMetricFamily(
            "skyrelay_origin_replication_lag",
            "Most publications any follower is behind, over the channels this shard leads",
            value=lag,
        )
        yield GaugeMetricFamily(
            "skyrelay_origin_followers_in_sync",
            "Follower copies holding everything, over the channels this shard leads",
            value=in_sync,
        )
        up = GaugeMetricFamily(
            "skyrelay_origin_peer_up", "Other shards' health as this one sees it", labels=["shard"]
        )
        for peer, state in self._app[HEALTH_KEY].snapshot().items():
            up.add_metric([peer], 1.0 if state == "up" else 0.0)
        yield up
        yield GaugeMetricFamily(
            "skyrelay_origin_edge_links",
            "Links connected to this shard",
            value=len(self._app[PEERS_KEY]),
        )


async def health(request: web.Request) -> web.Response:
    if request.app[SHARD_KEY].replicator.draining:
        return web.json_response({"status": "stopping"}, status=503)
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Ready once it is safe to count on this shard: every shard that is up is linked (claims
    can reach a quorum), it knows whether it restarted into a running cluster, and its copies
    of the channels its peers lead are current (origin/readiness.py)."""
    view = request.app[HEALTH_KEY]
    links = request.app[LINKS_KEY]
    replicator = request.app[SHARD_KEY].replicator
    readiness = request.app[READINESS_KEY]
    waiting = [i for i, link in links.items() if not link.is_up and view.is_up(i)]
    asking = replicator.joined_running is None
    ok = not waiting and not asking and readiness.current and not replicator.draining
    body = {
        "ready": ok,
        "waiting_for": waiting,
        "asking_peers": asking,
        "behind": readiness.behind,
        "stopping": replicator.draining,
    }
    return web.json_response(body, status=200 if ok else 503)


def _digest(data: Any) -> str:
    return hashlib.blake2b(orjson.dumps(data), digest_size=8).hexdigest()


def channel_copy(shard: Shard, channel: str) -> dict[str, Any]:
    """This shard's copy of one channel: its position, and a digest of each publication held
    (committed or not), so copies on different shards can be compared without payloads."""
    rep = shard.replicator.replicas.get(channel)
    if rep is None:
        return {"channel": channel, "held": False}
    stream = rep.stream
    return {
        "channel": channel,
        "held": stream is not None,
        "role": rep.role.value,
        "term": rep.term,
        "leader": rep.leader,
        "epoch": stream.epoch if stream else "",
        "top": stream.top if stream else 0,
        "committed": stream.committed if stream else 0,
        "publications": [[p.offset, _digest(p.data)] for p in stream.held()] if stream else [],
    }


async def status(request: web.Request) -> web.Response:
    """Leadership and peer health, for operators, edges' status pages and tests.
    ``?channels=0`` leaves out the per-channel table (it grows with the channels held);
    ``?channel=NAME`` answers with this shard's copy of that channel only."""
    shard = request.app[SHARD_KEY]
    replicator = shard.replicator
    name = request.query.get("channel")
    if name:
        return web.json_response(channel_copy(shard, name))
    summary = {
        "id": shard.id,
        "peers": request.app[HEALTH_KEY].snapshot(),
        "uptime": round(time.time() - request.app[STARTED_KEY], 1),
        "leading": replicator.leading(),
        "replicas": len(replicator.replicas),
        "takeovers": replicator.takeovers,
        "recent_takeovers": list(replicator.recent_takeovers),
        "published": shard.published,
        "edge_links": len(request.app[PEERS_KEY]),
        # Restarted into a running cluster (its empty copies count as unknown); null = asking.
        "joined_running": replicator.joined_running,
    }
    if request.query.get("channels") == "0":
        return web.json_response(summary)
    channels: dict[str, Any] = {}
    for name, rep in replicator.replicas.items():
        channels[name] = {
            "role": rep.role.value,
            "term": rep.term,
            "leader": rep.leader,
            "top": rep.stream.top if rep.stream else 0,
            "committed": rep.stream.committed if rep.stream else 0,
            "epoch": rep.stream.epoch if rep.stream else "",
        }
    return web.json_response({**summary, "channels": channels})


def _load(shard: Shard, store: ShardStore) -> None:
    """The copies on disk, back in their replicas; a clean load forgets nothing."""
    replicator = shard.replicator
    channels, damaged = load_copies(store, shard.config, replicator.replica)
    if damaged:
        log.warning(
            "storage was damaged: %d copies count only once a leader syncs them", len(channels)
        )
        replicator.unsure.update(channels)
    else:
        replicator.remembers = True
        replicator.joined_running = False


def build_app(config: ClusterConfig, shard_id: str) -> web.Application:
    app = web.Application()
    ring = Ring.of_shards(config.shards, config.replication)
    view = HealthView((s.id for s in config.shards), config.health, self_id=shard_id)
    links: dict[str, LinkClient] = {}
    app[LINKS_KEY] = links
    app[HEALTH_KEY] = view
    metrics = OriginMetrics()
    store = ShardStore.open(config, shard_id)
    shard = Shard(config, shard_id, ring, view, links, metrics, store)
    if store is not None:
        _load(shard, store)
    app[SHARD_KEY] = shard
    peers = set[PeerWriter]()
    app[PEERS_KEY] = peers
    app[SURVEYOR_KEY] = Surveyor(shard, peers, links)
    app[TASKS_KEY] = []
    app[READINESS_KEY] = readiness.Readiness()
    app[STARTED_KEY] = time.time()
    own = config.shard(shard_id)
    client_tls = shard_client_ssl(config, own.tls_cert, own.tls_key)
    if isinstance(client_tls, ssl.SSLContext):
        app[CLIENT_TLS_KEY] = client_tls
    registry = metrics.registry
    registry.register(ShardCollector(app))
    keyring = Keyring(config.link_secrets)
    app[KEYRING_KEY] = keyring
    guard = LinkGuard(keyring)
    app[LINK_GUARD_KEY] = guard
    app.router.add_get(wire.LINK_PATH, link_handler)
    app.router.add_get(CHALLENGE_PATH, guard.challenge)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics_handler(registry))
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    shard = app[SHARD_KEY]
    session = aiohttp.ClientSession()
    app[SESSION_KEY] = session
    peers = PeerLinks(
        shard,
        app[LINKS_KEY],
        app[HEALTH_KEY],
        app[KEYRING_KEY],
        session,
        app.get(CLIENT_TLS_KEY, True),
    )
    app[PEER_LINKS_KEY] = peers
    peers.sync(shard.config)
    app[TASKS_KEY].append(
        asyncio.create_task(
            run_prober(app[HEALTH_KEY], lambda: peers.urls, session, peers.on_change, peers.tls)
        )
    )
    shard.events.start()
    if shard.replicator.joined_running is None:
        app[TASKS_KEY].append(asyncio.create_task(_learn_if_restarted(app, peers)))
    app[TASKS_KEY].append(
        asyncio.create_task(
            readiness.keep_checking(
                app[READINESS_KEY], shard.replicator, app[LINKS_KEY], app[HEALTH_KEY]
            )
        )
    )


async def _learn_if_restarted(app: web.Application, peers: PeerLinks) -> None:
    """Ask the peers how long they have been up: did this shard join a running cluster?"""
    replicator = app[SHARD_KEY].replicator
    loop = asyncio.get_running_loop()
    deadline = loop.time() + amnesia.ASK_FOR
    heard: dict[str, float] = {}
    while True:
        heard.update(await amnesia.peer_uptimes(peers.session, peers.urls, peers.tls))
        mine = time.time() - replicator.booted
        if amnesia.joined_running(mine, list(heard.values())):
            replicator.joined_running = True
            log.warning("joined a running cluster: copies held nothing count only when synced")
            return
        if len(heard) >= len(peers.urls) or loop.time() >= deadline:
            replicator.joined_running = False
            log.info(
                "started with the cluster (%d of %d peers answered)", len(heard), len(peers.urls)
            )
            return
        await asyncio.sleep(amnesia.ASK_EVERY)


def reload(app: web.Application, config: ClusterConfig) -> None:
    """Apply a new config (SIGHUP): new shards are linked and the ring changes."""
    shard = app[SHARD_KEY]
    shard.config = config
    shard.replicator.config = config
    app[KEYRING_KEY].update(config.link_secrets)
    shard.events.start()  # if [events] was just set
    app[PEER_LINKS_KEY].sync(config)
    ring = Ring.of_shards(config.shards, config.replication)
    membership.reconfigure(shard.replicator, ring)
    log.info("config reloaded: %d shards", len(config.shards))


async def _stop(app: web.Application) -> None:
    for task in app[TASKS_KEY]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[SHARD_KEY].events.close()
    for link in app[LINKS_KEY].values():
        await link.close()
    await app[SESSION_KEY].close()
    store = app[SHARD_KEY].store
    if store is not None:
        await store.close()


async def run_origin(config_path: str, shard_id: str) -> None:
    config = load_config(config_path)
    shard = config.shard(shard_id)
    entry = f"shards[{config.shards.index(shard)}]"
    # Links must show a client certificate of the cluster's CA (checked by link_guard).
    tls = (
        server_context(shard.tls_cert, shard.tls_key, entry, clients=config.tls)
        if shard.tls
        else None
    )
    if tls is None and not config.link_secrets:
        log.warning("links to this shard are not authenticated: set SKYRELAY_LINK_SECRET")
    app = build_app(config, shard_id)
    listen = Listen(
        shard.listen_host or shard.host,
        shard.port,
        backlog=config.origin.listen_backlog,
        header_timeout=config.origin.http_header_timeout,
        ssl_context=tls,
    )

    async def stop() -> None:
        await hand_over(app[SHARD_KEY].replicator, config.origin.handover_timeout)

    hooks = Hooks(
        on_reload=lambda: reload(app, load_config(config_path)),
        on_stop=stop,
        config_path=config_path,
        watch_interval=config.config_watch_interval,
    )
    await serve_until_stopped(app, listen, hooks)
