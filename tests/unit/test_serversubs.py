"""Server-side subscriptions: which channels, with which options, recovered from where."""

from __future__ import annotations

import pytest

from skyrelay.config import parse_config
from skyrelay.edge.auth import Credentials, Overrides, ServerSub
from skyrelay.edge.serversubs import plan, positions_from_subs

CONFIG = parse_config(
    {
        "shards": [{"id": "o0", "url": "http://127.0.0.1:9000"}],
        "namespaces": {
            "inbox": {"personal_channel": True},
            "live": {"history_size": 0},
        },
    },
    env={},
)


def test_the_token_s_channels_come_first_then_the_personal_ones() -> None:
    creds = Credentials("ann", 0, subs=(ServerSub("news"), ServerSub("live:scores")))
    planned = plan(CONFIG, creds, {})
    assert [sub.channel for sub, _ in planned] == ["news", "live:scores", "inbox:#ann"]
    news, live, inbox = (options for _, options in planned)
    assert news.recoverable and inbox.recoverable
    assert not live.recoverable and not live.positioned  # no history, nothing to recover
    assert not any(o.recover for _, o in planned)


def test_anonymous_connections_have_no_personal_channel() -> None:
    assert plan(CONFIG, Credentials("", 0), {}) == []


def test_channels_of_no_namespace_are_skipped() -> None:
    creds = Credentials("", 0, subs=(ServerSub("nowhere:x"), ServerSub("news")))
    assert [sub.channel for sub, _ in plan(CONFIG, creds, {})] == ["news"]


def test_positions_from_the_connect_command_are_recovered() -> None:
    creds = Credentials("ann", 0, subs=(ServerSub("news", overrides=Overrides(presence=True)),))
    resume = positions_from_subs(
        {"news": {"recover": True, "offset": 7, "epoch": "e1"}, "other": {"offset": 3}}
    )
    assert resume == {"news": ("e1", 7)}
    (_, options), _ = plan(CONFIG, creds, resume)
    assert options.recover and (options.offset, options.epoch) == (7, "e1")
    assert options.presence


@pytest.mark.parametrize(
    "subs",
    [
        [],
        {"news": 1},
        {"news": {"recover": True, "offset": -1}},
        {"news": {"recover": True, "epoch": 5}},
    ],
)
def test_malformed_positions_are_named(subs: object) -> None:
    with pytest.raises(ValueError, match="subs"):
        positions_from_subs(subs)
