"""Outbox rows as server API calls, and their order."""

from __future__ import annotations

import pytest

from skyrelay.edge.pg_outbox_rows import BadRow, Row, api_call, lanes


def test_a_row_is_a_call_with_an_idempotency_key() -> None:
    row = Row(7, "publish", '{"channel": "c", "data": {"n": 1}}')
    assert api_call(row, "outbox") == (
        "publish",
        {"channel": "c", "data": {"n": 1}, "idempotency_key": "outbox:7"},
    )
    own = Row(8, "publish", {"channel": "c", "data": 1, "idempotency_key": "mine"})
    assert api_call(own, "outbox")[1]["idempotency_key"] == "mine"


@pytest.mark.parametrize(
    "row",
    [
        Row(1, "history", {}),
        Row(1, "publish", "[1]"),
        Row(1, "publish", "{nope"),
        Row(1, "publish", 3),
    ],
)
def test_bad_rows(row: Row) -> None:
    with pytest.raises(BadRow):
        api_call(row, "t")


def test_each_channel_in_order_channels_side_by_side() -> None:
    calls = [
        (Row(i, "publish", {}), "publish", {"channel": ch, "n": i})
        for i, ch in enumerate(["a", "b", "a", "c", "b"])
    ]
    grouped = lanes(calls)
    assert [[c[2]["n"] for c in lane] for lane in grouped] == [[0, 2], [1, 4], [3]]
    with_broadcast = [*calls, (Row(9, "broadcast", {}), "broadcast", {"channels": ["a"]})]
    assert lanes(with_broadcast) == [with_broadcast]
