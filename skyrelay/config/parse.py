"""Reading and validating a cluster config file. A bad file fails with a ``ConfigError`` that
names the offending key; environment secrets override the file's."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from skyrelay.config.backend import PG_OUTBOX_DSN_ENV, EventsConfig, PgOutboxConfig, ProxyConfig
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
    EdgeConfig,
    EdgeSettings,
    LogSettings,
    NamespaceConfig,
    OriginSettings,
    ShardConfig,
    TlsSettings,
    compiled_regex,
)
from skyrelay.ring.health import HealthSettings

_T = TypeVar("_T")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_value(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover


def _build(cls: type[_T], key: str, table: Any, **fixed: Any) -> _T:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = dict(fixed)
    for name, value in table.items():
        if name not in names or name in fixed:
            raise ConfigError(f"{key}.{name}: unknown setting")
        values[name] = _check_value(f"{key}.{name}", value, hints[name])
    try:
        return cls(**values)
    except TypeError as exc:
        missing = str(exc).rsplit(":", 1)[-1].strip()
        raise ConfigError(f"{key}: missing required setting {missing}") from None


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
    tls = _build(TlsSettings, "tls", data.get("tls", {}))
    shards = _parse_shards(data.get("shards"), tls)
    replication = _check_value("replication", data.get("replication", 3), int)
    if replication < 1:
        raise ConfigError("replication: must be at least 1")
    min_copies = _check_value("min_copies", data.get("min_copies", 0), int)
    watch = _check_value("config_watch_interval", data.get("config_watch_interval", 0.0), float)
    if min_copies > min(replication, len(shards)):
        raise ConfigError("min_copies: cannot exceed the replica set size")
    token_secret = env.get(TOKEN_SECRET_ENV) or _check_value(
        "token_secret", data.get("token_secret", ""), str
    )
    api_key = env.get(API_KEY_ENV) or _check_value("api_key", data.get("api_key", ""), str)
    link_secret = env.get(LINK_SECRET_ENV) or _check_value(
        "link_secret", data.get("link_secret", ""), str
    )
    link_secrets = tuple(part.strip() for part in link_secret.split(",") if part.strip())
    proxies = _parse_proxies(data.get("proxies", {}))
    namespaces = _parse_namespaces(data.get("namespaces", {}))
    edge = _parse_edge_settings(data.get("edge", {}))
    _check_proxy_names(proxies, edge, namespaces)
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
        log=_build(LogSettings, "log", data.get("log", {})),
        tls=tls,
        proxies=types.MappingProxyType(proxies),
        pg_outbox=_parse_pg_outbox(data.get("pg_outbox", {}), env),
        events=_parse_events(data.get("events", {})),
        token_secret=token_secret,
        api_key=api_key,
        link_secrets=link_secrets,
    )


def _parse_proxies(raw: Any) -> dict[str, ProxyConfig]:
    if not isinstance(raw, dict):
        raise ConfigError("proxies: expected a table of [proxies.NAME] tables")
    proxies = {}
    for name, table in raw.items():
        key = f"proxies.{name}"
        if not _ID_RE.match(name):
            raise ConfigError(f"{key}: use 1-64 letters, digits, _ . or - in a proxy name")
        proxy = _build(ProxyConfig, key, table)
        parts = urlsplit(proxy.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{key}.endpoint: expected an http(s):// URL, got {proxy.endpoint!r}")
        if proxy.timeout <= 0:
            raise ConfigError(f"{key}.timeout: must be positive")
        if proxy.max_reply_bytes < 1024:
            raise ConfigError(f"{key}.max_reply_bytes: must be at least 1024")
        if proxy.breaker_failures < 1 or proxy.breaker_seconds <= 0:
            raise ConfigError(f"{key}.breaker_failures: at least 1, with breaker_seconds > 0")
        proxies[name] = proxy
    return proxies


def _parse_pg_outbox(raw: Any, env: Mapping[str, str]) -> PgOutboxConfig:
    outbox = _build(PgOutboxConfig, "pg_outbox", raw)
    if env.get(PG_OUTBOX_DSN_ENV):
        outbox = dataclasses.replace(outbox, dsn=env[PG_OUTBOX_DSN_ENV])
    if not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?", outbox.table
    ):
        raise ConfigError("pg_outbox.table: a table name, optionally schema.table")
    if not 1 <= outbox.partitions <= 1024:
        raise ConfigError("pg_outbox.partitions: 1 to 1024")
    if not 1 <= outbox.batch_size <= 10000:
        raise ConfigError("pg_outbox.batch_size: 1 to 10000")
    if outbox.poll_interval <= 0 or outbox.reconnect_delay <= 0:
        raise ConfigError("pg_outbox.poll_interval: poll_interval and reconnect_delay > 0")
    return outbox


def _parse_events(raw: Any) -> EventsConfig:
    events = _build(EventsConfig, "events", raw)
    if events.endpoint:
        parts = urlsplit(events.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"events.endpoint: expected an http(s):// URL, got {events.endpoint!r}"
            )
    for line in events.headers:
        name, sep, _ = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name.strip()):
            raise ConfigError(f'events.headers: expected "Name: value", got {line!r}')
    if events.timeout <= 0 or events.retry_delay <= 0:
        raise ConfigError("events.timeout: timeout and retry_delay must be positive")
    if events.max_retry_delay < events.retry_delay:
        raise ConfigError("events.max_retry_delay: must be at least retry_delay")
    if not 1 <= events.batch_size <= 10000:
        raise ConfigError("events.batch_size: 1 to 10000")
    if events.backlog < 1000 or events.edge_queue < 100:
        raise ConfigError("events.backlog: at least 1000 (and edge_queue at least 100)")
    if events.edge_grace < 1 or events.retention < 60 or events.checkpoint_interval <= 0:
        raise ConfigError(
            "events.edge_grace: at least 1 s (retention at least 60 s, checkpoint_interval > 0)"
        )
    return events


def _check_proxy_names(
    proxies: Mapping[str, ProxyConfig], edge: EdgeSettings, namespaces: Mapping[str, Any]
) -> None:
    uses = [
        (f"edge.{kind}_proxy", getattr(edge, f"{kind}_proxy"))
        for kind in ("connect", "refresh", "rpc")
    ]
    for ns_name, ns in namespaces.items():
        for kind in ("subscribe", "publish", "sub_refresh"):
            uses.append((f"namespaces.{ns_name}.{kind}_proxy", getattr(ns, f"{kind}_proxy")))
    for key, name in uses:
        if name and name not in proxies:
            raise ConfigError(f"{key}: no [proxies.{name}] table")


def _parse_shards(raw_shards: Any, tls: TlsSettings) -> tuple[ShardConfig, ...]:
    if not isinstance(raw_shards, list) or not raw_shards:
        raise ConfigError("shards: at least one [[shards]] entry is required")
    shards = tuple(_build(ShardConfig, f"shards[{i}]", raw) for i, raw in enumerate(raw_shards))
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
    edges = tuple(_build(EdgeConfig, f"edges[{i}]", raw) for i, raw in enumerate(raw_edges))
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
        namespaces[name] = _build(NamespaceConfig, f"namespaces.{name}", raw)
        try:
            compiled_regex(namespaces[name].channel_regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ConfigError(f"namespaces.{name}.channel_regex: {exc}") from None
        _check_namespace(f"namespaces.{name}", namespaces[name])
    return namespaces


def _parse_edge_settings(raw: Any) -> EdgeSettings:
    edge = _build(EdgeSettings, "edge", raw)
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
    origin = _build(OriginSettings, "origin", raw)
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
    health = _build(HealthSettings, "health", raw)
    if health.fall < 1 or health.rise < 1:
        raise ConfigError("health.fall: fall and rise must be at least 1")
    if health.interval <= 0 or health.timeout <= 0:
        raise ConfigError("health.interval: interval and timeout must be positive")
    return health


def _parse_auth(raw: Any) -> AuthSettings:
    auth = _build(AuthSettings, "auth", raw)
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
