"""The app backend's proxy protocol, as Centrifugo's HTTP proxies speak it: what each reply
means. Pure code: bytes in, results or the protocol's errors out.

A reply is ``{"result": {...}}``, or ``{"error": {"code", "message", "temporary"}}`` (the
client gets that error), or ``{"disconnect": {"code", "reason"}}`` (the client is
disconnected with it). Anything else is a bad reply: the client gets a temporary error (100)
and retries, as when the backend is slow or down.

What belongs here: the shapes, strictly. What never does: HTTP, timeouts, the breaker
(``edge.backend``), or a client's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from skyrelay.config.backend import StatusTransform
from skyrelay.edge.auth import (
    NO_OVERRIDES,
    InvalidToken,
    Overrides,
    ServerSub,
    parse_overrides,
    parse_server_subs,
)
from skyrelay.protocol.codes import Disconnect, ReplyError

# Error codes a backend may answer with, and disconnect codes (the application ranges).
ERROR_CODES = range(100, 2000)
DISCONNECT_CODES = range(3000, 5000)
MAX_REASON = 123  # what fits in a WebSocket close frame


class BadReply(ValueError):
    """A reply that is not the proxy protocol."""


def outcome(raw: bytes, user: str | None = None) -> dict[str, Any] | None:
    """The ``result`` of a reply (None when it has none); raises the client's ReplyError or
    Disconnect when the backend says so. ``user``: the connection's, when known: a result
    that names another user is a bad reply, never obeyed."""
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadReply("the reply is not JSON") from None
    if not isinstance(reply, dict):
        raise BadReply("the reply is not an object")
    disconnect = reply.get("disconnect")
    if disconnect is not None:
        code, text = _coded(disconnect, "disconnect", "reason", DISCONNECT_CODES)
        raise Disconnect(code, text[:MAX_REASON])
    error = reply.get("error")
    if error is not None:
        code, text = _coded(error, "error", "message", ERROR_CODES)
        raise ReplyError(code, text, error.get("temporary") is True)
    result = reply.get("result")
    if result is None:
        return None
    if not isinstance(result, dict):
        raise BadReply("result is not an object")
    named = result.get("user")
    if user is not None and named is not None and named != user:
        raise BadReply("the reply is for another user")
    return result


def _coded(body: Any, what: str, text_key: str, codes: range) -> tuple[int, str]:
    if not isinstance(body, dict):
        raise BadReply(f"{what} is not an object")
    code, text = body.get("code"), body.get(text_key, "")
    if isinstance(code, bool) or not isinstance(code, int) or code not in codes:
        raise BadReply(f"{what}.code must be in {codes.start}-{codes.stop - 1}")
    if not isinstance(text, str):
        raise BadReply(f"{what}.{text_key} must be a string")
    return code, text


def _expire_at(result: dict[str, Any]) -> int:
    value = result.get("expire_at", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadReply("expire_at must be a Unix time in seconds (0: never)")
    return value


@dataclass(frozen=True, slots=True)
class ConnectGrant:
    """Who a connect without a token is, as the backend says."""

    user: str
    expire_at: int
    info: Any = None
    # For the connect reply (``data``).
    data: Any = None
    subs: tuple[ServerSub, ...] = ()
    # Kept with the connection, never shown to the client; sent to the proxies that include it.
    meta: dict[str, Any] | None = None


def status_answer(
    transforms: tuple[StatusTransform, ...], status: int
) -> ReplyError | Disconnect | None:
    """What an HTTP status other than 200 tells the client, where a transform says so."""
    for t in transforms:
        if t.status_code == status:
            if t.disconnect_code:
                return Disconnect(t.disconnect_code, t.disconnect_reason or "disconnect")
            return ReplyError(t.error_code, t.error_message, t.error_temporary)
    return None


def connect_grant(result: dict[str, Any] | None) -> ConnectGrant | None:
    """None: the backend gave no result (the client is refused)."""
    if result is None:
        return None
    user = result.get("user", "")
    if not isinstance(user, str):
        raise BadReply("user must be a string")
    try:
        subs = parse_server_subs(result)
    except InvalidToken as exc:
        raise BadReply(str(exc)) from None
    meta = result.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise BadReply("meta must be an object")
    info, data = result.get("info"), result.get("data")
    return ConnectGrant(user, _expire_at(result), info, data, subs, meta)


@dataclass(frozen=True, slots=True)
class Extension:
    """A refresh or sub_refresh answer: expired, or valid until ``expire_at`` (0: for good)."""

    expired: bool
    expire_at: int
    info: Any = None


def extension(result: dict[str, Any] | None) -> Extension:
    """No result counts as expired, as in Centrifugo."""
    if result is None or result.get("expired") is True:
        return Extension(True, 0)
    return Extension(False, _expire_at(result), result.get("info"))


@dataclass(frozen=True, slots=True)
class SubscribeGrant:
    info: Any = None
    # For the subscribe reply (``data``).
    data: Any = None
    expire_at: int = 0
    overrides: Overrides = NO_OVERRIDES


def subscribe_grant(result: dict[str, Any] | None) -> SubscribeGrant:
    if result is None:
        raise BadReply("a subscribe reply needs a result, an error or a disconnect")
    try:
        overrides = parse_overrides(result.get("override"))
    except InvalidToken as exc:
        raise BadReply(str(exc)) from None
    return SubscribeGrant(result.get("info"), result.get("data"), _expire_at(result), overrides)


def publish_rewrite(result: dict[str, Any] | None, request: dict[str, Any]) -> dict[str, Any]:
    """The publish request to make: the client's, with what the backend changed (``data``,
    ``skip_history``, ``tags``, ``idempotency_key``, ``delta``)."""
    if result is None:
        raise BadReply("a publish reply needs a result, an error or a disconnect")
    out = dict(request)
    if "data" in result and result["data"] is not None:
        out["data"] = result["data"]
    if result.get("skip_history") is True:
        out["skip_history"] = True
    tags = result.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise BadReply("tags must map strings to strings")
        out["tags"] = tags
    key = result.get("idempotency_key")
    if key is not None:
        if not isinstance(key, str) or not key:
            raise BadReply("idempotency_key must be a non-empty string")
        out["ikey"] = key
    if result.get("delta") is True:
        out["delta"] = True
    return out


def rpc_data(result: dict[str, Any] | None) -> dict[str, Any]:
    """The rpc reply's result: ``data`` when the backend gave one."""
    data = result.get("data") if result is not None else None
    return {"data": data} if data is not None else {}
