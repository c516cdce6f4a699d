"""Rows of the app's PostgreSQL outbox table (Centrifugo's shape) as server API calls, and the
order they go in. Pure code.

A row is ``(id, method, payload)``: ``publish`` or ``broadcast`` with the call's params. A
row without an ``idempotency_key`` gets one from the table and its id, so that a row published
again after a crash (its removal not committed) is not published twice within the origin's
idempotency window.

Order: the rows of a batch are in id order; each channel's rows are published one after the
other, different channels side by side. A broadcast spans channels, so a batch that holds one
goes one row at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

METHODS = ("publish", "broadcast")


class BadRow(ValueError):
    """A row that is no server API call: it is logged and removed, never retried."""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    method: str
    payload: Any


def api_call(row: Row, table: str) -> tuple[str, dict[str, Any]]:
    """The call a row stands for: its method and params (with an idempotency key)."""
    if row.method not in METHODS:
        raise BadRow(f"method must be publish or broadcast, not {row.method!r}")
    payload = row.payload
    if isinstance(payload, str | bytes):  # jsonb as the driver hands it over
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise BadRow("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadRow("payload must be a JSON object of the call's params")
    params = dict(payload)
    if not params.get("idempotency_key"):
        params["idempotency_key"] = f"{table}:{row.id}"
    return row.method, params


def lanes(
    calls: list[tuple[Row, str, dict[str, Any]]],
) -> list[list[tuple[Row, str, dict[str, Any]]]]:
    """The calls grouped so that each group goes in order and groups go side by side."""
    if any(method != "publish" for _, method, _ in calls):
        return [calls]
    by_channel: dict[Any, list[tuple[Row, str, dict[str, Any]]]] = {}
    for call in calls:
        channel = call[2].get("channel")
        by_channel.setdefault(channel if isinstance(channel, str) else None, []).append(call)
    return list(by_channel.values())
