"""Links from this shard to the other shards, kept in step with the config: one per shard,
authenticated like an edge's (a client certificate, or the link secret's challenge), with
the health view told when one comes or goes.

What belongs here: which links exist and what their ups and downs mean for membership. What
never does: what travels on them (``origin.replication``, ``origin.feeding``).
"""

from __future__ import annotations

import ssl

import aiohttp

from skyrelay.config import ClusterConfig
from skyrelay.link.auth import Keyring
from skyrelay.link.client import LinkClient, LinkSettings
from skyrelay.origin import membership
from skyrelay.origin.shard import Shard
from skyrelay.ring.health import HealthView


class PeerLinks:
    def __init__(
        self,
        shard: Shard,
        links: dict[str, LinkClient],
        health: HealthView,
        keyring: Keyring,
        session: aiohttp.ClientSession,
        tls: ssl.SSLContext | bool,
    ) -> None:
        self.shard = shard
        self.links = links
        self.health = health
        self.keyring = keyring
        self.session = session
        # How https:// peers are verified, for links and probes.
        self.tls = tls
        self.urls: dict[str, str] = {}

    def on_change(self, shard_id: str, up: bool) -> None:
        membership.peer_changed(self.shard.replicator, shard_id, up)

    def on_down(self, link: LinkClient) -> None:
        if self.health.lost(link.id):
            self.on_change(link.id, False)

    def on_up(self, link: LinkClient) -> None:
        if self.health.is_up(link.id):
            self.on_change(link.id, True)

    def sync(self, config: ClusterConfig) -> None:
        """Link to every shard of ``config``; links to removed shards stay while they move."""
        settings = LinkSettings(
            request_timeout=config.origin.replication_timeout,
            reconnect_delay=config.edge.link_reconnect_delay,
            max_frame=config.origin.link_max_frame,
            heartbeat=max(config.health.interval, 1.0),
            ssl=self.tls,
            keyring=self.keyring,
        )
        for peer in config.shards:
            if peer.id == self.shard.id or peer.id in self.links:
                continue
            self.health.add(peer.id)
            self.urls[peer.id] = peer.url
            link = LinkClient(
                peer.id,
                peer.url,
                self.shard.id,
                self.session,
                settings,
                lambda *_: None,
                self.on_up,
                self.on_down,
            )
            self.links[peer.id] = link
            link.start()
