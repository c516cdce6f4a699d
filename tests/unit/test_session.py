"""Subscribe options, permissions and history queries (pure session rules)."""

from __future__ import annotations

import pytest

from edge.codes import Disconnect, ReplyError
from edge.recovery import RecoveryOutcome
from edge.session import (
    allowed,
    channel_param,
    history_query,
    history_result,
    subscribe_options,
    subscribe_result,
)
from skyrelay.config import NamespaceConfig

NS = NamespaceConfig(history_size=10)


def test_recovery_needs_recoverable_unless_forced() -> None:
    plain = subscribe_options(NS, {"recover": True, "offset": 3, "epoch": "e"})
    assert not plain.recover and not plain.recoverable
    asked = subscribe_options(NS, {"recoverable": True, "recover": True, "offset": 3, "epoch": "e"})
    assert asked.recover and asked.positioned
    forced = subscribe_options(NamespaceConfig(force_recovery=True), {"recover": True})
    assert forced.recover
    no_history = subscribe_options(NamespaceConfig(history_size=0), {"recoverable": True})
    assert not no_history.recoverable


def test_unsupported_features_are_refused_as_the_protocol_says() -> None:
    with pytest.raises(ReplyError) as info:
        subscribe_options(NS, {"tf": {"key": "x"}})
    assert info.value.code == 107
    with pytest.raises(ReplyError) as info:
        subscribe_options(NS, {"type": 1})
    assert info.value.code == 108


def test_flag_bit_2_rejects_unrecovered() -> None:
    assert subscribe_options(NS, {"flag": 3}).reject_unrecovered
    assert not subscribe_options(NS, {"flag": 1}).reject_unrecovered


@pytest.mark.parametrize("params", [{"offset": -1}, {"offset": "1"}, {"epoch": 5}])
def test_bad_positions_are_bad_requests(params: dict[str, object]) -> None:
    with pytest.raises(ReplyError) as info:
        subscribe_options(NS, params)
    assert info.value.code == 107


def test_subscribe_result_shapes() -> None:
    options = subscribe_options(NS, {"recoverable": True, "recover": True, "offset": 1})
    assert subscribe_result(subscribe_options(NS, {}), "e", 4) == {}
    assert subscribe_result(subscribe_options(NS, {"positioned": True}), "e", 4) == {
        "positioned": True,
        "epoch": "e",
        "offset": 4,
    }
    ok = RecoveryOutcome(True, [{"data": 1, "offset": 2}], "e", 1)
    assert subscribe_result(options, "", 0, ok) == {
        "recoverable": True,
        "positioned": True,
        "was_recovering": True,
        "recovered": True,
        "epoch": "e",
        "offset": 1,
        "publications": [{"data": 1, "offset": 2}],
    }
    failed = subscribe_result(options, "", 0, RecoveryOutcome(False, [], "e", 9))
    assert "recovered" not in failed and "publications" not in failed
    assert failed["offset"] == 9


def test_permissions() -> None:
    assert allowed("anonymous", "", False)
    assert allowed("client", "u", False) and not allowed("client", "", True)
    assert allowed("subscriber", "", True) and not allowed("subscriber", "u", False)
    assert not allowed("none", "u", True)


def test_channel_param() -> None:
    assert channel_param({"channel": "a:b"}) == "a:b"
    with pytest.raises(Disconnect):
        channel_param({})
    with pytest.raises(ReplyError):
        channel_param({"channel": "bad\nname"})
    with pytest.raises(ReplyError):
        channel_param({"channel": "x" * 256})


def test_history_query_rules() -> None:
    assert history_query({}, 300).limit == 0
    assert history_query({"limit": -1}, 300).limit == 300
    assert history_query({"limit": 1000}, 300).limit == 300
    with pytest.raises(ReplyError) as info:
        history_query({"reverse": True, "since": {"offset": 0}}, 300)
    assert info.value.code == 107
    q = history_query({"since": {"offset": 2, "epoch": "old"}}, 300)
    with pytest.raises(ReplyError) as info:
        history_result(q, {"epoch": "new", "offset": 3, "publications": []})
    assert info.value.code == 112
    assert history_result(history_query({}, 300), {"epoch": "e", "offset": 0}) == {
        "publications": [],
        "epoch": "e",
        "offset": 0,
    }
