"""Routes a channel to the link of the shard that serves it, through the ring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from edge.upstream import ShardLink
from ring import Member, Ring
from skyrelay.config import ClusterConfig

PushHandler = Callable[[dict[str, Any]], None]
LinkHandler = Callable[[ShardLink], None]


class Router:
    """Each channel is served by the first shard of its replica set."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.ring = Ring((Member(s.id, s.weight) for s in config.shards), config.replication)
        self.links: dict[str, ShardLink] = {}

    def start_links(
        self,
        edge_id: str,
        session: aiohttp.ClientSession,
        on_push: PushHandler,
        on_up: LinkHandler,
        on_down: LinkHandler,
    ) -> None:
        for shard in self.config.shards:
            link = ShardLink(shard, edge_id, session, self.config.edge, on_push, on_up, on_down)
            self.links[shard.id] = link
            link.start()

    def link_for(self, channel: str) -> ShardLink:
        return self.links[self.ring.owner(channel)]

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
