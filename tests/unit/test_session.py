"""Subscribe options, permissions and history queries (pure session rules)."""

from __future__ import annotations

import pytest

from skyrelay.config import NamespaceConfig
from skyrelay.edge.auth import Overrides
from skyrelay.edge.recovery import RecoveryOutcome
from skyrelay.edge.session import (
    allowed,
    channel_param,
    channel_users,
    check_subscribe_without_token,
    history_query,
    history_result,
    personal_channel,
    subscribe_options,
    subscribe_result,
)
from skyrelay.protocol.codes import Disconnect, ReplyError

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
    # A getState SDK: `recover` with the reject flag asks for recovery without `recoverable`.
    get_state = subscribe_options(NS, {"recover": True, "offset": 3, "epoch": "e", "flag": 3})
    assert get_state.recover and get_state.recoverable and get_state.reject_unrecovered


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


def refusal(ns: NamespaceConfig, channel: str, user: str, insecure: bool = False) -> int | None:
    try:
        check_subscribe_without_token(ns, channel, user, insecure)
    except ReplyError as exc:
        return exc.code
    return None


def test_subscribing_without_a_token_follows_the_namespace() -> None:
    assert refusal(NamespaceConfig(), "news", "") is None
    assert refusal(NamespaceConfig(allow_subscribe="client"), "news", "") == 103
    assert refusal(NamespaceConfig(allow_subscribe="client"), "news", "ann") is None
    assert refusal(NamespaceConfig(allow_subscribe="none"), "news", "ann") == 103
    # Private channels and token-only namespaces never, whoever asks.
    assert refusal(NamespaceConfig(), "$secret", "ann") == 103
    assert refusal(NamespaceConfig(require_subscription_token=True), "news", "ann") == 103
    # Insecure mode lets everything through.
    assert refusal(NamespaceConfig(require_subscription_token=True), "$x", "", True) is None


def test_user_limited_channels_admit_their_users_whatever_allow_subscribe_says() -> None:
    limited = NamespaceConfig(allow_subscribe="none", allow_user_limited_channels=True)
    assert refusal(limited, "dm:chat#ann,bob", "bob") is None
    assert refusal(limited, "dm:chat#ann,bob", "carl") == 103
    assert refusal(limited, "dm:chat#ann,bob", "") == 103
    assert refusal(limited, "dm:lobby", "ann") == 103  # not user-limited: allow_subscribe
    # Where the namespace does not allow them, `#` is an ordinary character.
    assert refusal(NamespaceConfig(), "chat#ann", "carl") is None
    assert channel_users("a#b,c") == ["b", "c"] and channel_users("plain") is None


def test_personal_channels_are_named_after_the_user() -> None:
    assert personal_channel("default", "ann") == "#ann"
    assert personal_channel("inbox", "ann") == "inbox:#ann"


def test_token_overrides_win_over_the_namespace() -> None:
    ns = NamespaceConfig(presence=True, join_leave=True)
    plain = subscribe_options(ns, {})
    assert plain.presence and plain.emit_join_leave and not plain.push_join_leave
    assert subscribe_options(ns, {"join_leave": True}).push_join_leave
    quiet = Overrides(presence=False, force_recovery=True, force_push_join_leave=True)
    options = subscribe_options(ns, {}, quiet, {"role": "x"})
    assert not options.presence and not options.emit_join_leave
    assert options.recoverable and options.positioned and options.push_join_leave
    assert options.chan_info == {"role": "x"}
    # Without history nothing is recoverable, whatever the token says.
    bare = subscribe_options(NamespaceConfig(history_size=0), {}, quiet)
    assert not bare.recoverable and not bare.positioned


def test_namespaces_force_positioning_and_join_leave_pushes() -> None:
    assert subscribe_options(NamespaceConfig(force_positioning=True), {}).positioned
    forced = NamespaceConfig(presence=True, join_leave=True, force_push_join_leave=True)
    assert subscribe_options(forced, {}).push_join_leave
    # Join/leave pushes need the namespace to announce them at all.
    assert not subscribe_options(
        NamespaceConfig(presence=True), {"join_leave": True}
    ).push_join_leave


def test_the_reject_flag_is_bit_two() -> None:
    assert subscribe_options(NS, {"flag": 2}).reject_unrecovered
    assert subscribe_options(NS, {"flag": 3}).reject_unrecovered
    assert not subscribe_options(NS, {"flag": 1}).reject_unrecovered
    assert not subscribe_options(NS, {"flag": "2"}).reject_unrecovered
