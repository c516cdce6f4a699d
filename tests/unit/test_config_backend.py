"""The settings of the app's backend: the events table, its checks and its headers."""

from __future__ import annotations

from typing import Any

import pytest

from skyrelay.config import ConfigError, EventsConfig, parse_config
from skyrelay.config.settings import EVENT_LOG_CHANNEL

SHARDS = [{"id": "o1", "url": "http://127.0.0.1:9001"}]


def events_config(**table: Any) -> EventsConfig:
    return parse_config({"shards": SHARDS, "events": table}, env={}).events


def test_events_are_off_without_an_endpoint() -> None:
    assert not events_config().enabled


def test_headers_are_name_value_pairs() -> None:
    config = events_config(
        endpoint="http://127.0.0.1:9/events", headers=["Authorization: Bearer a:b", "X-App: 1"]
    )
    assert config.enabled
    assert config.header_pairs() == {"Authorization": "Bearer a:b", "X-App": "1"}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"endpoint": "ftp://host/x"}, "events.endpoint"),
        ({"headers": ["no colon"]}, "events.headers"),
        ({"headers": ["bad name: x"]}, "events.headers"),
        ({"timeout": 0}, "events.timeout"),
        ({"retry_delay": 2, "max_retry_delay": 1}, "events.max_retry_delay"),
        ({"batch_size": 0}, "events.batch_size"),
        ({"backlog": 10}, "events.backlog"),
        ({"edge_grace": 0.5}, "events.edge_grace"),
        ({"surprise": 1}, "events.surprise"),
        ({"types": ["connect", "typo"]}, "events.types"),
    ],
)
def test_bad_events_settings_name_their_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        events_config(**table)


def test_the_event_log_is_kept_by_the_events_bounds_and_named_by_no_namespace() -> None:
    config = parse_config({"shards": SHARDS, "events": {"backlog": 5000, "retention": 600}}, env={})
    assert config.namespace(EVENT_LOG_CHANNEL) is None
    kept = config.stream_namespace(EVENT_LOG_CHANNEL)
    assert kept is not None and (kept.history_size, kept.history_ttl) == (5000, 600)
    assert config.stream_namespace("news") is config.namespace("news")
    with pytest.raises(ConfigError):
        parse_config({"shards": SHARDS, "namespaces": {"skyrelay.internal": {}}}, env={})
