"""Routes a channel to the shard that leads it: the first healthy member of its replica set,
or the shard a redirect names."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp

from skyrelay.config import ClusterConfig
from skyrelay.edge.batched_publish import NotSent, PublishBatcher
from skyrelay.link import wire
from skyrelay.link.auth import Keyring
from skyrelay.link.client import LinkClient, LinkSettings, SurveyHandler, unavailable
from skyrelay.protocol.codes import ReplyError
from skyrelay.ring import Ring
from skyrelay.ring.health import HealthView

PushHandler = Callable[[LinkClient, dict[str, Any]], None]
LinkHandler = Callable[[LinkClient], None]

# Redirects (NOT_LEADER) followed for one request before it fails as temporary.
MAX_REDIRECTS = 2
# How often a request waiting for a shard re-checks where to go, in seconds.
REROUTE_POLL = 0.05


class Router:
    def __init__(self, config: ClusterConfig, tls: ssl.SSLContext | bool = True) -> None:
        self.config = config
        # How https:// shards are verified, for links, probes and status requests.
        self.tls = tls
        self.ring = Ring.of_shards(config.shards, config.replication)
        self.health = HealthView((s.id for s in config.shards), config.health)
        self.links: dict[str, LinkClient] = {}
        self.batcher = PublishBatcher(self.links, config.edge.upstream_timeout)
        # The link secrets this process answers the shards' challenges with.
        self.keyring = Keyring(config.link_secrets)
        self._start: Callable[[str, str], None] | None = None

    def start_links(
        self,
        edge_id: str,
        session: aiohttp.ClientSession,
        on_push: PushHandler,
        on_up: LinkHandler,
        on_down: LinkHandler,
        on_survey: SurveyHandler | None = None,
    ) -> None:
        edge = self.config.edge
        settings = LinkSettings(
            request_timeout=edge.upstream_timeout,
            reconnect_delay=edge.link_reconnect_delay,
            max_frame=edge.link_max_frame,
            heartbeat=max(self.config.health.interval, 1.0),
            ssl=self.tls,
            keyring=self.keyring,
        )

        def start(shard_id: str, url: str) -> None:
            link = LinkClient(
                shard_id, url, edge_id, session, settings, on_push, on_up, on_down, on_survey
            )
            self.links[shard_id] = link
            link.start()

        self._start = start
        for shard in self.config.shards:
            start(shard.id, shard.url)

    def reconfigure(self, config: ClusterConfig) -> None:
        """A new ring, and link secrets: link new shards (links to removed ones stay while
        channels move)."""
        self.config = config
        self.keyring.update(config.link_secrets)
        self.ring = Ring.of_shards(config.shards, config.replication)
        for shard in config.shards:
            self.health.add(shard.id)
            if shard.id not in self.links and self._start is not None:
                self._start(shard.id, shard.url)

    def primary(self, channel: str) -> str:
        """The shard that should lead ``channel``: its first healthy replica."""
        replicas = self.ring.replicas(channel)
        return self.health.first_up(replicas) or replicas[0]

    async def request(
        self, channel: str, op: str, params: dict[str, Any], shard: str | None = None
    ) -> tuple[LinkClient, dict[str, Any]]:
        """Send to the channel's leader, following redirects and waiting out a failover."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.edge.upstream_timeout
        target = shard or self.primary(channel)
        redirects = 0
        while True:
            link = self.links[target]
            while not link.is_up:
                if loop.time() >= deadline:
                    raise unavailable(target, "is unreachable")
                await asyncio.sleep(REROUTE_POLL)
                if shard is None or not self.health.is_up(target):
                    target = self.primary(channel)
                    link = self.links[target]
            try:
                return link, await link.request(op, params, max(0.0, deadline - loop.time()))
            except ReplyError as exc:
                if exc.code != wire.NOT_LEADER or redirects >= MAX_REDIRECTS:
                    raise
                redirects += 1
                hinted = exc.leader if exc.leader in self.links else None
                if hinted is not None and not self.health.is_up(hinted):
                    # The shard's view lags ours: it points at a shard we know is down.
                    # Ask our own choice again once that shard has caught up.
                    hinted = None
                    await asyncio.sleep(REROUTE_POLL)
                target = hinted or self.primary(channel)

    async def publish(self, channel: str, request: dict[str, Any]) -> dict[str, Any]:
        """Publish through the batch to the channel's leader (``request`` holds ``ch``); alone,
        following redirects, when the batch could not place it."""
        target = self.primary(channel)
        if self.links[target].is_up and not request.get("skip_history"):
            try:
                return await self.batcher.publish(target, request)
            except NotSent:
                pass
            except ReplyError as exc:
                if exc.code != wire.NOT_LEADER:
                    raise
        return (await self.request(channel, wire.OP_PUB, request))[1]

    def shard_down(self, shard_id: str) -> None:
        """Health says ``shard_id`` is down: fail what waits on it so callers move on."""
        link = self.links.get(shard_id)
        if link is not None:
            link.fail_pending(f"shard {shard_id} is down")

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
