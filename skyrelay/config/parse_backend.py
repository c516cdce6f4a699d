"""Reading the app's backend settings: ``[proxies.NAME]``, ``[pg_outbox]``, ``[events]``,
and the names of proxies that other tables refer to."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from skyrelay.config.backend import (
    EVENT_TYPES,
    PG_OUTBOX_DSN_ENV,
    EventsConfig,
    PgOutboxConfig,
    ProxyConfig,
    StatusTransform,
)
from skyrelay.config.settings import ConfigError, EdgeSettings
from skyrelay.config.tables import build

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_proxies(raw: Any) -> dict[str, ProxyConfig]:
    if not isinstance(raw, dict):
        raise ConfigError("proxies: expected a table of [proxies.NAME] tables")
    proxies = {}
    for name, table in raw.items():
        key = f"proxies.{name}"
        if not _ID_RE.match(name):
            raise ConfigError(f"{key}: use 1-64 letters, digits, _ . or - in a proxy name")
        fields = dict(table) if isinstance(table, dict) else table
        transforms: tuple[StatusTransform, ...] = ()
        if isinstance(fields, dict) and "status_to_code_transforms" in fields:
            raw = fields.pop("status_to_code_transforms")
            transforms = parse_status_transforms(f"{key}.status_to_code_transforms", raw)
        proxy = build(ProxyConfig, key, fields, status_to_code_transforms=transforms)
        _check_endpoint(f"{key}.endpoint", proxy.endpoint)
        if proxy.timeout <= 0:
            raise ConfigError(f"{key}.timeout: must be positive")
        if proxy.max_reply_bytes < 1024:
            raise ConfigError(f"{key}.max_reply_bytes: must be at least 1024")
        if proxy.breaker_failures < 1 or proxy.breaker_seconds <= 0:
            raise ConfigError(f"{key}.breaker_failures: at least 1, with breaker_seconds > 0")
        proxies[name] = proxy
    return proxies


def parse_status_transforms(key: str, raw: Any) -> tuple[StatusTransform, ...]:
    """``[{status_code, to_error = {code, message, temporary}}]`` or ``to_disconnect =
    {code, reason}``, as Centrifugo writes them."""
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list of tables")
    found = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or set(item) - {"status_code", "to_error", "to_disconnect"}:
            raise ConfigError(f"{where}: status_code with to_error or to_disconnect")
        status = item.get("status_code")
        if not isinstance(status, int) or not 100 <= status <= 599 or status == 200:
            raise ConfigError(f"{where}.status_code: an HTTP status other than 200")
        error, disconnect = item.get("to_error"), item.get("to_disconnect")
        if (error is None) == (disconnect is None):
            raise ConfigError(f"{where}: exactly one of to_error and to_disconnect")
        if error is not None:
            e = build(_ErrorTable, f"{where}.to_error", error)
            if e.code < 400:
                raise ConfigError(f"{where}.to_error.code: 400 or more (an app's error)")
            found.append(StatusTransform(status, e.code, e.message, e.temporary))
        else:
            d = build(_DisconnectTable, f"{where}.to_disconnect", disconnect)
            if not 3000 <= d.code <= 4999:
                raise ConfigError(f"{where}.to_disconnect.code: 3000 to 4999")
            found.append(
                StatusTransform(status, disconnect_code=d.code, disconnect_reason=d.reason)
            )
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class _ErrorTable:
    code: int
    message: str = ""
    temporary: bool = False


@dataclasses.dataclass(frozen=True)
class _DisconnectTable:
    code: int
    reason: str = ""


def parse_pg_outbox(raw: Any, env: Mapping[str, str]) -> PgOutboxConfig:
    outbox = build(PgOutboxConfig, "pg_outbox", raw)
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


def parse_events(raw: Any) -> EventsConfig:
    events = build(EventsConfig, "events", raw)
    if events.endpoint:
        _check_endpoint("events.endpoint", events.endpoint)
    for line in events.headers:
        name, sep, _ = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name.strip()):
            raise ConfigError(f'events.headers: expected "Name: value", got {line!r}')
    if events.timeout <= 0 or events.retry_delay <= 0:
        raise ConfigError("events.timeout: timeout and retry_delay must be positive")
    if events.max_retry_delay < events.retry_delay:
        raise ConfigError("events.max_retry_delay: must be at least retry_delay")
    unknown = sorted(set(events.types) - set(EVENT_TYPES))
    if unknown:
        raise ConfigError(f"events.types: {', '.join(unknown)} not among {', '.join(EVENT_TYPES)}")
    if not 1 <= events.batch_size <= 10000:
        raise ConfigError("events.batch_size: 1 to 10000")
    if events.backlog < 1000 or events.edge_queue < 100:
        raise ConfigError("events.backlog: at least 1000 (and edge_queue at least 100)")
    if events.edge_grace < 1 or events.retention < 60 or events.checkpoint_interval <= 0:
        raise ConfigError(
            "events.edge_grace: at least 1 s (retention at least 60 s, checkpoint_interval > 0)"
        )
    return events


def check_proxy_names(
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


def _check_endpoint(key: str, url: str) -> None:
    """An app backend's URL: http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http(s):// URL, got {url!r}")
