"""Publications carried by a long-poll request, so a client on long-poll can send too.

A request may hold ``"publish": [{"channel", "data", "idempotency_key"}, ...]``. They run in
order, under the same rules as the client ``publish`` command (namespace permission, data
depth, idempotency keys scoped to the user), and the answer lists one result per
publication in ``published``: ``{"offset", "epoch"}`` or ``{"error": {...}}``. The first
error stops the rest (they get no entry), so a retry never lets a later one overtake it.
"""

from __future__ import annotations

from typing import Any

from skyrelay.edge import json_codec
from skyrelay.edge.commands import MAX_IDEMPOTENCY_KEY
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.session import name_ok
from skyrelay.protocol.codes import ErrorCode, ReplyError

# Publications one long-poll request may carry.
MAX_PUBLISH = 16


def check_items(items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise ReplyError(ErrorCode.BAD_REQUEST, "publish must be a list")
    if len(items) > MAX_PUBLISH:
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, f"at most {MAX_PUBLISH} publications")
    return items


async def publish_all(
    node: EdgeNode, user: str, items: list[Any], following: set[str]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for item in items:
        try:
            results.append(await _publish(node, user, item, following))
        except ReplyError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.temporary:
                error["temporary"] = True
            results.append({"error": error})
            break
    return results


async def _publish(node: EdgeNode, user: str, item: Any, following: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ReplyError(ErrorCode.BAD_REQUEST, "each publication must be an object")
    channel = item.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channel required")
    if not name_ok(channel):
        raise ReplyError(ErrorCode.BAD_REQUEST, "invalid channel name")
    ns = node.config.namespace(channel)
    if ns is None or not ns.name_allowed(channel):
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL)
    if not node.permits(ns.allow_publish, user, channel in following):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)
    if "data" not in item:
        raise ReplyError(ErrorCode.BAD_REQUEST, "data required")
    if not json_codec.data_depth_ok(item["data"]):
        raise ReplyError(ErrorCode.BAD_REQUEST, "data nested too deeply")
    request: dict[str, Any] = {
        "ch": channel,
        "data": item["data"],
        "info": {"user": user, "client": ""},
    }
    key = item.get("idempotency_key")
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise ReplyError(ErrorCode.BAD_REQUEST, "idempotency_key must be a short string")
        # The same scope as the publish command: a retry over another transport still dedupes.
        request["ikey"] = f"client:{user}:{key}"
    result = await node.router.publish(channel, request)
    return {key: result[key] for key in ("offset", "epoch") if key in result}
