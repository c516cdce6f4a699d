"""Configuration loading: defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skyrelay.config import ConfigError, load_config, parse_config
from skyrelay.testing.cluster import ClusterSpec, render_config

SHARDS = [{"id": "o0", "url": "http://127.0.0.1:9100"}]


def test_defaults() -> None:
    config = parse_config({"shards": SHARDS}, env={})
    assert config.replication == 3
    assert config.effective_min_copies == 1  # one shard
    assert config.edge.websocket_compression is False
    assert config.edge.max_message_size == 65536
    assert "websocket" in config.edge.transports
    assert config.namespace("chat") is config.namespaces["default"]
    assert config.namespace("nope:chat") is None


def test_environment_secrets_override_the_file() -> None:
    config = parse_config(
        {"shards": SHARDS, "token_secret": "file", "api_key": "file"},
        env={"SKYRELAY_TOKEN_SECRET": "env", "SKYRELAY_API_KEY": "envkey"},
    )
    assert (config.token_secret, config.api_key) == ("env", "envkey")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "shards"),
        ({"shards": [{"id": "o0"}]}, "shards[0]: missing required setting"),
        ({"shards": [{"id": "o0", "url": "nope"}]}, "shards[0].url"),
        ({"shards": [*SHARDS, *SHARDS]}, "shards[1].id: duplicate"),
        ({"shards": SHARDS, "edge": {"transports": ["carrier-pigeon"]}}, "edge.transports"),
        ({"shards": [{"id": "o0", "url": "http://h:1", "weight": 0}]}, "shards[0].weight"),
        ({"shards": SHARDS, "replication": "3"}, "replication: expected an integer"),
        ({"shards": SHARDS, "bogus": 1}, "bogus: unknown setting"),
        ({"shards": SHARDS, "edge": {"ping_intervl": 3}}, "edge.ping_intervl: unknown setting"),
        ({"shards": SHARDS, "edge": {"max_message_size": -1}}, "edge.max_message_size"),
        ({"shards": SHARDS, "edge": {"websocket_compression": 1}}, "edge.websocket_compression"),
        ({"shards": SHARDS, "edge": {"pong_timeout": 30}}, "edge.pong_timeout"),
        (
            {"shards": SHARDS, "namespaces": {"chat": {"allow_publish": "everyone"}}},
            "namespaces.chat.allow_publish: expected one of",
        ),
        ({"shards": SHARDS, "namespaces": {"a b": {}}}, "namespaces.a b"),
        ({"shards": SHARDS, "min_copies": 2}, "min_copies"),
        ({"shards": SHARDS, "edges": [{"id": "e0", "port": 70000}]}, "edges[0].port"),
        ({"shards": SHARDS, "origin": {"survey_timeout": 0}}, "origin.survey_timeout"),
        ({"shards": SHARDS, "edge": {"connect_proxy": "app"}}, "edge.connect_proxy: no"),
        (
            {"shards": SHARDS, "namespaces": {"chat": {"publish_proxy": "x"}}},
            "namespaces.chat.publish_proxy: no",
        ),
        ({"shards": SHARDS, "proxies": {"app": {}}}, "proxies.app: missing required"),
        ({"shards": SHARDS, "proxies": {"app": {"endpoint": "ftp://x"}}}, "proxies.app.endpoint"),
        (
            {"shards": SHARDS, "proxies": {"app": {"endpoint": "http://x", "timeout": 0}}},
            "proxies.app.timeout",
        ),
        ({"shards": SHARDS, "proxies": {"a b": {"endpoint": "http://x"}}}, "proxies.a b"),
        (
            {"shards": SHARDS, "namespaces": {"d": {"allowed_delta_types": ["zstd"]}}},
            "namespaces.d.allowed_delta_types",
        ),
        ({"shards": SHARDS, "edge": {"websocket_compression_level": 10}}, "edge.websocket_c"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data, env={})


def test_load_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("shards = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_the_local_cluster_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "up.toml"
    path.write_text(render_config(ClusterSpec()))
    config = load_config(path, env={})
    assert [s.port for s in config.shards] == [8100, 8101, 8102]
    assert [e.port for e in config.edges] == [8000, 8001]
    assert config.replication == 3
    assert config.effective_min_copies == 2
    assert "http://127.0.0.1:*" in config.edge.allowed_origins
