"""What an edge reports in a survey, and the checks of the API parameters, without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from skyrelay.edge.census import (
    DisconnectOrder,
    channel_matcher,
    count_channels,
    disconnect_order,
    node_stats,
    pattern_param,
)
from skyrelay.protocol.codes import ReplyError

HELD = object()  # stands for a hub channel: the subscription is set up


@dataclass
class Conn:
    id: str
    user: str
    session: str = ""
    subs: dict[str, object | None] = field(default_factory=dict)


def conns() -> list[Conn]:
    return [
        Conn("c1", "ann", subs={"news": HELD, "chat:a": HELD}),
        Conn("c2", "ann", session="s2", subs={"news": HELD, "chat:b": None}),
        Conn("c3", "", subs={"chat:a": HELD}),
        Conn("c4", "", subs={}),
    ]


def test_counts_only_channels_set_up_and_matching() -> None:
    assert count_channels(conns(), channel_matcher("")) == {"news": 2, "chat:a": 2}
    assert count_channels(conns(), channel_matcher("chat:*")) == {"chat:a": 2}
    assert count_channels(conns(), channel_matcher("n?ws")) == {"news": 2}
    assert count_channels(conns(), channel_matcher("chat:[b-z]")) == {}
    assert count_channels([], channel_matcher("*")) == {}


def test_glob_is_case_sensitive_and_whole_name() -> None:
    match = channel_matcher("news*")
    assert match("news") and match("news:x")
    assert not match("News") and not match("the-news")
    assert channel_matcher("a.b")("a.b") and not channel_matcher("a.b")("axb")


def test_node_stats() -> None:
    assert node_stats(conns()) == {
        "num_clients": 4,
        "num_users": 2,  # ann, and the anonymous user
        "num_channels": 2,
        "num_subs": 4,
    }
    assert node_stats([]) == {"num_clients": 0, "num_users": 0, "num_channels": 0, "num_subs": 0}


def test_pattern_param() -> None:
    assert pattern_param({}) == ""
    assert pattern_param({"pattern": None}) == ""
    assert pattern_param({"pattern": "a*"}) == "a*"
    with pytest.raises(ReplyError, match="pattern must be a string") as raised:
        pattern_param({"pattern": 3})
    assert raised.value.code == 107


def test_disconnect_defaults() -> None:
    order = disconnect_order({"user": "ann"})
    assert order == DisconnectOrder(user="ann", code=3503, reason="force disconnect")
    assert disconnect_order({"user": "ann", "disconnect": {"code": 0, "reason": ""}}) == order
    custom = disconnect_order({"user": "ann", "disconnect": {"code": 3011}})
    assert (custom.code, custom.reason) == (3011, "force reconnect")
    assert disconnect_order({"user": "ann", "disconnect": {"code": 4100}}).reason == "disconnect"


def test_disconnect_matching() -> None:
    c1, c2, c3, _ = conns()
    assert [c.id for c in conns() if disconnect_order({"user": "ann"}).matches(c)] == ["c1", "c2"]
    assert not disconnect_order({"user": "bob"}).matches(c1)
    only = disconnect_order({"user": "ann", "client": "c2"})
    assert (only.matches(c1), only.matches(c2)) == (False, True)
    by_session = disconnect_order({"user": "ann", "session": "s2"})
    assert (by_session.matches(c1), by_session.matches(c2)) == (False, True)
    kept = disconnect_order({"user": "ann", "whitelist": ["c1"]})
    assert (kept.matches(c1), kept.matches(c2)) == (False, True)
    assert not disconnect_order({"user": "ann", "client": "c3"}).matches(c3)  # not ann's


def test_disconnect_order_round_trips() -> None:
    params = {
        "user": "ann",
        "client": "c1",
        "session": "s",
        "whitelist": ["x", "y"],
        "disconnect": {"code": 4500, "reason": "bye"},
    }
    order = disconnect_order(params)
    assert order.to_params() == params
    assert disconnect_order(order.to_params()) == order
    assert disconnect_order({"user": "ann"}).to_params() == {
        "user": "ann",
        "disconnect": {"code": 3503, "reason": "force disconnect"},
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "user is required"),
        ({"user": ""}, "user is required"),
        ({"user": ["a"]}, "user must be a string"),
        ({"user": "a", "client": 5}, "client must be a string"),
        ({"user": "a", "session": False}, "session must be a string"),
        ({"user": "a", "whitelist": {"c": 1}}, "whitelist must be a list"),
        ({"user": "a", "whitelist": ["c", None]}, "whitelist must be a list"),
        ({"user": "a", "disconnect": "x"}, "disconnect must be an object"),
        ({"user": "a", "disconnect": {"code": True}}, "disconnect.code must be an integer"),
        ({"user": "a", "disconnect": {"code": 2999}}, "disconnect.code must be between"),
        ({"user": "a", "disconnect": {"code": 5000}}, "disconnect.code must be between"),
        ({"user": "a", "disconnect": {"reason": 1}}, "disconnect.reason must be a string"),
        ({"user": "a", "disconnect": {"reason": "x" * 124}}, "at most 123 bytes"),
    ],
)
def test_disconnect_rejects(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplyError, match=message) as raised:
        disconnect_order(params)
    assert raised.value.code == 107
