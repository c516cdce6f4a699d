"""A shard without sockets for unit tests: one shard (replication 1), fake peers that keep
what they are sent, and a call helper that goes through the shard's own request path."""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.config import ClusterConfig, parse_config
from skyrelay.origin.shard import Shard
from skyrelay.origin.storage.store import ShardStore
from skyrelay.ring import Member, Ring
from skyrelay.ring.health import HealthSettings, HealthView

CONFIG = parse_config(
    {
        "shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}],
        "replication": 1,
        "namespaces": {"nohist": {"history_size": 0}},
    },
    env={},
)


class FakeEdge:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[dict[str, Any]] = []

    def send(self, message: bytes) -> None:
        self.sent.append(orjson.loads(message))


def new_shard(store: ShardStore | None = None, config: ClusterConfig = CONFIG) -> Shard:
    ring = Ring([Member("o0")], 1)
    view = HealthView(["o0"], HealthSettings(), self_id="o0")
    return Shard(config, "o0", ring, view, {}, store=store)


async def call(shard: Shard, peer: FakeEdge, **message: Any) -> dict[str, Any]:
    request = {"id": 1, **message}
    if shard.is_immediate(request):
        return dict(orjson.loads(shard.handle_now(peer, request)))
    return dict(orjson.loads(await shard.handle(peer, request)))
