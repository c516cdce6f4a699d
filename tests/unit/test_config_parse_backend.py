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


def test_status_transforms_as_centrifugo_writes_them() -> None:
    proxies = parse_proxies(
        {
            "app": {
                "endpoint": "http://127.0.0.1:9/x",
                "status_to_code_transforms": [
                    {"status_code": 403, "to_error": {"code": 1403, "message": "no"}},
                    {"status_code": 410, "to_disconnect": {"code": 4410, "reason": "gone"}},
                ],
            }
        }
    )
    forbidden, gone = proxies["app"].status_to_code_transforms
    assert (forbidden.status_code, forbidden.error_code, forbidden.error_message) == (
        403,
        1403,
        "no",
    )
    assert (gone.disconnect_code, gone.disconnect_reason) == (4410, "gone")


@pytest.mark.parametrize(
    ("transform", "key"),
    [
        ({"status_code": 200, "to_error": {"code": 1400}}, "status_code"),
        ({"status_code": 403}, "exactly one"),
        ({"status_code": 403, "to_error": {"code": 100}}, "to_error.code"),
        ({"status_code": 403, "to_disconnect": {"code": 1000}}, "to_disconnect.code"),
        ({"status_code": 403, "to_error": {"code": 1400, "extra": 1}}, "to_error.extra"),
        ({"status": 403}, "status_code with"),
    ],
)
def test_bad_status_transforms_name_their_key(transform: dict[str, object], key: str) -> None:
    table = {"endpoint": "http://127.0.0.1:9/x", "status_to_code_transforms": [transform]}
    with pytest.raises(ConfigError, match=r"proxies\.app\.status_to_code_transforms\[0\]"):
        parse_proxies({"app": table})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_proxies({"app": table})
