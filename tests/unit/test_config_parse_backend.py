"""The app's backend tables: proxies, the outbox, events, and proxy names used elsewhere."""

from __future__ import annotations

import pytest

from skyrelay.config import ConfigError, EdgeSettings
from skyrelay.config.parse_backend import (
    check_proxy_names,
    parse_events,
    parse_pg_outbox,
    parse_proxies,
)


def test_proxies_and_their_names() -> None:
    proxies = parse_proxies({"app": {"endpoint": "http://127.0.0.1:9/x", "timeout": 2}})
    assert proxies["app"].timeout == 2.0
    check_proxy_names(proxies, EdgeSettings(connect_proxy="app"), {})
    with pytest.raises(ConfigError, match=r"edge\.connect_proxy: no \[proxies\.gone\]"):
        check_proxy_names(proxies, EdgeSettings(connect_proxy="gone"), {})


def test_the_outbox_dsn_comes_from_the_environment_first() -> None:
    env = {"SKYRELAY_PG_OUTBOX_DSN": "postgresql://secret@db/app"}
    assert parse_pg_outbox({"dsn": "postgresql://file"}, env).dsn == env["SKYRELAY_PG_OUTBOX_DSN"]
    with pytest.raises(ConfigError, match=r"pg_outbox\.table"):
        parse_pg_outbox({"table": "drop table; --"}, {})


def test_events_bounds() -> None:
    assert parse_events({"endpoint": "https://app/events"}).enabled
    with pytest.raises(ConfigError, match=r"events\.batch_size"):
        parse_events({"batch_size": 0})
