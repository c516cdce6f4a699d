"""Cluster configuration: one TOML file, validated at start-up. ``settings`` holds what a
config says (every limit, with its default and reason), ``parse`` reads and validates a file."""

from skyrelay.config.backend import PROXY_KINDS, EventsConfig, PgOutboxConfig, ProxyConfig
from skyrelay.config.members import EdgeConfig, ShardConfig
from skyrelay.config.parse import TOP_LEVEL_KEYS, load_config, parse_config
from skyrelay.config.settings import (
    API_KEY_ENV,
    LINK_SECRET_ENV,
    MAX_SHARD_WEIGHT,
    TOKEN_SECRET_ENV,
    TRANSPORTS,
    AuthSettings,
    ClusterConfig,
    ConfigError,
    EdgeSettings,
    LogSettings,
    NamespaceConfig,
    OriginSettings,
    Permission,
    TlsSettings,
)
from skyrelay.ring.health import HealthSettings

__all__ = [
    "API_KEY_ENV",
    "LINK_SECRET_ENV",
    "MAX_SHARD_WEIGHT",
    "PROXY_KINDS",
    "TOKEN_SECRET_ENV",
    "TOP_LEVEL_KEYS",
    "TRANSPORTS",
    "AuthSettings",
    "ClusterConfig",
    "ConfigError",
    "EdgeConfig",
    "EdgeSettings",
    "EventsConfig",
    "HealthSettings",
    "LogSettings",
    "NamespaceConfig",
    "OriginSettings",
    "Permission",
    "PgOutboxConfig",
    "ProxyConfig",
    "ShardConfig",
    "TlsSettings",
    "load_config",
    "parse_config",
]
