"""What a parsed configuration answers: namespaces by channel, shards and edges by id, the
write quorum, channel-name rules."""

from __future__ import annotations

import pytest

from skyrelay.config import ConfigError
from skyrelay.config.settings import (
    ClusterConfig,
    EdgeConfig,
    NamespaceConfig,
    ShardConfig,
)


def shards(n: int) -> tuple[ShardConfig, ...]:
    return tuple(ShardConfig(f"o{i}", f"http://127.0.0.1:{9100 + i}") for i in range(n))


def test_a_channel_s_prefix_names_its_namespace() -> None:
    config = ClusterConfig(
        shards=shards(1),
        namespaces={"default": NamespaceConfig(), "chat": NamespaceConfig(history_size=5)},
    )
    assert config.namespace("room") is config.namespaces["default"]
    assert config.namespace("chat:room") is config.namespaces["chat"]
    assert config.namespace("nope:room") is None


@pytest.mark.parametrize(
    ("replication", "count", "min_copies", "quorum"),
    [(3, 1, 0, 1), (3, 3, 0, 2), (3, 5, 0, 2), (5, 5, 0, 3), (3, 3, 3, 3), (3, 2, 3, 2)],
)
def test_the_write_quorum_is_a_majority_of_the_replica_set_unless_set(
    replication: int, count: int, min_copies: int, quorum: int
) -> None:
    config = ClusterConfig(shards=shards(count), replication=replication, min_copies=min_copies)
    assert config.effective_min_copies == quorum


def test_shards_and_edges_are_found_by_id_or_named_in_the_error() -> None:
    config = ClusterConfig(shards=shards(2), edges=(EdgeConfig("e0", "127.0.0.1", 8000),))
    assert config.shard("o1").port == 9101
    with pytest.raises(ConfigError, match="no shard with id 'o9'"):
        config.shard("o9")
    assert config.edge_by_id(None).id == "e0"
    with pytest.raises(ConfigError, match="no edge with id 'e9'"):
        config.edge_by_id("e9")
    with pytest.raises(ConfigError, match="at least one"):
        ClusterConfig(shards=shards(1)).edge_by_id(None)


def test_a_shard_url_gives_its_host_port_and_scheme() -> None:
    shard = ShardConfig("o0", "https://origin.internal:9443")
    assert (shard.host, shard.port, shard.tls) == ("origin.internal", 9443, True)
    assert ShardConfig("o1", "http://10.0.0.1").port == 80


def test_channel_names_follow_the_namespace_regex_after_the_prefix() -> None:
    anything = NamespaceConfig()
    assert anything.name_allowed("chat:any thing")
    strict = NamespaceConfig(channel_regex=r"[a-z0-9_]+")
    assert strict.name_allowed("chat:room_1") and strict.name_allowed("room_1")
    assert not strict.name_allowed("chat:Room") and not strict.name_allowed("chat:a:b")
