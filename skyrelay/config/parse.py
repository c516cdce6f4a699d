"""Reading and validating a cluster config file. A bad file fails with a ``ConfigError`` that
names the offending key; environment secrets override the file's."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from skyrelay.config.members import EdgeConfig, ShardConfig
from skyrelay.config.parse_backend import (
    check_proxy_names,
    parse_events,
    parse_pg_outbox,
    parse_proxies,
)
from skyrelay.config.settings import (
    API_KEY_ENV,
    DELTA_TYPES,
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
    TlsSettings,
    compiled_regex,
)
from skyrelay.config.tables import build, check_value
from skyrelay.ring.health import HealthSettings

_T = TypeVar("_T")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# The tables and keys a config file may have at its top level.
TOP_LEVEL_KEYS = frozenset(
    {
        "shards",
        "edges",
        "replication",
        "min_copies",
        "namespaces",
        "edge",
        "origin",
        "health",
        "auth",
        "log",
        "tls",
        "token_secret",
        "api_key",
        "link_secret",
        "config_watch_interval",
        "proxies",
        "pg_outbox",
        "events",
    }
)


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ClusterConfig:
    """Validate a parsed TOML document; environment secrets override the file's."""
    env = os.environ if env is None else env
    for name in data:
        if name not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{name}: unknown setting")
    tls = build(TlsSettings, "tls", data.get("tls", {}))
    shards = _parse_shards(data.get("shards"), tls)
    replication = check_value("replication", data.get("replication", 3), int)
    if replication < 1:
        raise ConfigError("replication: must be at least 1")
    min_copies = check_value("min_copies", data.get("min_copies", 0), int)
    watch = check_value("config_watch_interval", data.get("config_watch_interval", 0.0), float)
    if min_copies > min(replication, len(shards)):
        raise ConfigError("min_copies: cannot exceed the replica set size")
    token_secret = env.get(TOKEN_SECRET_ENV) or check_value(
        "token_secret", data.get("token_secret", ""), str
    )
    api_key = env.get(API_KEY_ENV) or check_value("api_key", data.get("api_key", ""), str)
    link_secret = env.get(LINK_SECRET_ENV) or check_value(
        "link_secret", data.get("link_secret", ""), str
    )
    link_secrets = tuple(part.strip() for part in link_secret.split(",") if part.strip())
    proxies = parse_proxies(data.get("proxies", {}))
    namespaces = _parse_namespaces(data.get("namespaces", {}))
    edge = _parse_edge_settings(data.get("edge", {}))
    check_proxy_names(proxies, edge, namespaces)
    return ClusterConfig(
        shards=shards,
        edges=_parse_edges(data.get("edges", [])),
        replication=replication,
        min_copies=min_copies,
        config_watch_interval=watch,
        namespaces=types.MappingProxyType(namespaces),
        edge=edge,
        origin=_parse_origin_settings(data.get("origin", {})),
        health=_parse_health(data.get("health", {})),
        auth=_parse_auth(data.get("auth", {})),
        log=build(LogSettings, "log", data.get("log", {})),
        tls=tls,
        proxies=types.MappingProxyType(proxies),
        pg_outbox=parse_pg_outbox(data.get("pg_outbox", {}), env),
        events=parse_events(data.get("events", {})),
        token_secret=token_secret,
        api_key=api_key,
        link_secrets=link_secrets,
    )


def _parse_shards(raw_shards: Any, tls: TlsSettings) -> tuple[ShardConfig, ...]:
    if not isinstance(raw_shards, list) or not raw_shards:
        raise ConfigError("shards: at least one [[shards]] entry is required")
    shards = tuple(build(ShardConfig, f"shards[{i}]", raw) for i, raw in enumerate(raw_shards))
    _check_ids("shards", [s.id for s in shards])
    for i, shard in enumerate(shards):
        parts = urlsplit(shard.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise ConfigError(f"shards[{i}].url: expected http://host:port, got {shard.url!r}")
        if not 1 <= shard.weight <= MAX_SHARD_WEIGHT:
            raise ConfigError(
                f"shards[{i}].weight: expected 1-{MAX_SHARD_WEIGHT}, got {shard.weight}"
            )
        _check_tls_pair(f"shards[{i}]", shard.tls_cert, shard.tls_key)
        if shard.tls and not shard.tls_cert:
            raise ConfigError(f"shards[{i}].tls_cert: required for an https:// url")
        if not shard.tls and shard.tls_cert:
            raise ConfigError(f"shards[{i}].url: expected https:// with tls_cert set")
        if tls.require and not shard.tls:
            raise ConfigError(f"shards[{i}].url: tls.require is set, expected https://")
    return shards


def _parse_edges(raw_edges: Any) -> tuple[EdgeConfig, ...]:
    if not isinstance(raw_edges, list):
        raise ConfigError("edges: expected a list of [[edges]] tables")
    edges = tuple(build(EdgeConfig, f"edges[{i}]", raw) for i, raw in enumerate(raw_edges))
    _check_ids("edges", [e.id for e in edges])
    for i, entry in enumerate(edges):
        if not 0 < entry.port < 65536:
            raise ConfigError(f"edges[{i}].port: expected 1-65535, got {entry.port}")
        _check_tls_pair(f"edges[{i}]", entry.tls_cert, entry.tls_key)
    return edges


def _parse_namespaces(raw_namespaces: Any) -> dict[str, NamespaceConfig]:
    if not isinstance(raw_namespaces, dict):
        raise ConfigError("namespaces: expected a table of namespaces")
    namespaces: dict[str, NamespaceConfig] = {"default": NamespaceConfig()}
    for name, raw in raw_namespaces.items():
        if not _NAMESPACE_RE.match(name):
            raise ConfigError(f"namespaces.{name}: names use letters, digits, _ and -")
        namespaces[name] = build(NamespaceConfig, f"namespaces.{name}", raw)
        try:
            compiled_regex(namespaces[name].channel_regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ConfigError(f"namespaces.{name}.channel_regex: {exc}") from None
        _check_namespace(f"namespaces.{name}", namespaces[name])
    return namespaces


def _parse_edge_settings(raw: Any) -> EdgeSettings:
    edge = build(EdgeSettings, "edge", raw)
    unknown = [t for t in edge.transports if t not in TRANSPORTS]
    if unknown:
        choices = ", ".join(TRANSPORTS)
        raise ConfigError(f"edge.transports: unknown transport {unknown[0]!r} (one of {choices})")
    if edge.ping_interval < 1 or edge.pong_timeout >= edge.ping_interval:
        raise ConfigError("edge.pong_timeout: must be shorter than edge.ping_interval (>= 1)")
    if edge.http_header_timeout <= 0 or edge.http_body_timeout <= 0:
        raise ConfigError("edge.http_header_timeout: header and body timeouts must be positive")
    if edge.workers < 1:
        raise ConfigError("edge.workers: must be at least 1")
    if not 0 < edge.worker_restart_delay <= edge.worker_restart_max_delay:
        raise ConfigError(
            "edge.worker_restart_delay: must be positive and at most edge.worker_restart_max_delay"
        )
    if not 1 <= edge.websocket_compression_level <= 9:
        raise ConfigError("edge.websocket_compression_level: must be 1 to 9")
    if not 9 <= edge.websocket_compression_window_bits <= 15:
        raise ConfigError("edge.websocket_compression_window_bits: must be 9 to 15")
    if edge.websocket_compression_min_size < 0:
        raise ConfigError("edge.websocket_compression_min_size: must not be negative")
    return edge


def _parse_origin_settings(raw: Any) -> OriginSettings:
    origin = build(OriginSettings, "origin", raw)
    if isinstance(raw, dict) and "durability" not in raw and origin.data_dir:
        origin = dataclasses.replace(origin, durability="disk")
    if origin.durability != "memory" and not origin.data_dir:
        raise ConfigError(f"origin.data_dir: durability {origin.durability!r} needs a data_dir")
    if origin.storage_segment_bytes < 1 << 16:
        raise ConfigError("origin.storage_segment_bytes: must be at least 65536")
    if not origin.cluster_id:
        raise ConfigError("origin.cluster_id: must not be empty")
    if origin.http_header_timeout <= 0:
        raise ConfigError("origin.http_header_timeout: must be positive")
    if origin.survey_timeout <= 0:
        raise ConfigError("origin.survey_timeout: must be positive")
    return origin


def _parse_health(raw: Any) -> HealthSettings:
    health = build(HealthSettings, "health", raw)
    if health.fall < 1 or health.rise < 1:
        raise ConfigError("health.fall: fall and rise must be at least 1")
    if health.interval <= 0 or health.timeout <= 0:
        raise ConfigError("health.interval: interval and timeout must be positive")
    return health


def _parse_auth(raw: Any) -> AuthSettings:
    auth = build(AuthSettings, "auth", raw)
    if "none" in (a.lower() for a in auth.algorithms):
        raise ConfigError("auth.algorithms: 'none' is never allowed")
    return auth


def _check_namespace(key: str, ns: NamespaceConfig) -> None:
    if ns.join_leave and not ns.presence:
        raise ConfigError(f"{key}.join_leave: needs presence = true")
    if ns.force_push_join_leave and not ns.join_leave:
        raise ConfigError(f"{key}.force_push_join_leave: needs join_leave = true")
    unknown = [t for t in ns.allowed_delta_types if t not in DELTA_TYPES]
    if unknown:
        raise ConfigError(f"{key}.allowed_delta_types: unknown {unknown[0]!r} (only 'fossil')")


def _check_tls_pair(entry: str, cert: str, key: str) -> None:
    if bool(cert) != bool(key):
        missing = "tls_key" if cert else "tls_cert"
        raise ConfigError(f"{entry}.{missing}: set both tls_cert and tls_key, or neither")


def _check_ids(section: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if not _ID_RE.match(ident):
            raise ConfigError(f"{section}[{i}].id: use 1-64 letters, digits, _ . or -")
        if ident in seen:
            raise ConfigError(f"{section}[{i}].id: duplicate id {ident!r}")
        seen.add(ident)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ClusterConfig:
    """Read and validate a cluster config file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    return parse_config(data, env)
