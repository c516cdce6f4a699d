"""The server API on the edge: ``POST /api/<method>`` with ``X-API-Key``, routed to the owner
shard through the ring. Answers follow Centrifugo's HTTP API so that ``cent`` works."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from skyrelay.edge import census
from skyrelay.edge.bodies import RequestError, json_object, read_body
from skyrelay.edge.json_codec import MAX_DATA_DEPTH, data_depth_ok
from skyrelay.edge.node import NODE_KEY, EdgeNode
from skyrelay.edge.session import (
    HistoryQuery,
    history_query,
    history_request,
    history_result,
    name_ok,
)
from skyrelay.edge.survey import ask_cluster
from skyrelay.link import wire
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.protocol.protobuf_message import json_value

ApiMethod = Callable[[EdgeNode, dict[str, Any]], Awaitable[dict[str, Any]]]

# Commands in one batch, or channels in one broadcast.
MAX_BATCH = 1000
# Longest X-Request-ID taken from a caller; longer ones are replaced by our own id.
MAX_REQUEST_ID = 128
# Longest channel name written to a log line.
MAX_LOGGED_CHANNEL = 255

CHANNEL_KEY = web.RequestKey("channel", str)

log = logging.getLogger("skyrelay.edge.api")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def header_api_key(request: web.Request) -> str | None:
    """The key from ``X-API-Key``, else from ``Authorization: apikey <key>``."""
    key = request.headers.get("X-API-Key")
    if key is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "apikey":
            key = value.strip()
    return key


def api_key_accepted(expected: str, given: str) -> bool:
    """``given`` is the API key (none is accepted when no key is set)."""
    # Header bytes that are not UTF-8 arrive surrogate-escaped: compare the bytes as sent.
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode()
    )


def _api_key(request: web.Request) -> str:
    key = header_api_key(request)
    return key if key is not None else request.query.get("api_key", "")


def _channel(params: dict[str, Any]) -> str:
    channel = params.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channel is required")
    if not name_ok(channel):
        raise ReplyError(ErrorCode.BAD_REQUEST, "invalid channel name")
    return channel


def _b64_json(value: Any) -> Any:
    """``b64data``: base64 of the data's bytes, which must be JSON (channels carry JSON; see
    docs/wire-formats.md)."""
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except binascii.Error:
        raw = None
    if raw is None:
        raise ReplyError(ErrorCode.BAD_REQUEST, "b64data must be a base64 string")
    data = json_value(raw)
    if isinstance(data, bytes):
        raise ReplyError(ErrorCode.BAD_REQUEST, "b64data must hold JSON")
    return data


def _check_namespace(node: EdgeNode, channel: str) -> None:
    if node.config.namespace(channel) is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")


async def api_publish(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    _check_namespace(node, channel)
    if "data" not in params and "b64data" in params:
        params = {**params, "data": _b64_json(params["b64data"])}
    if "data" not in params:
        raise ReplyError(ErrorCode.BAD_REQUEST, "data is required")
    if not data_depth_ok(params["data"]):
        raise ReplyError(ErrorCode.BAD_REQUEST, f"data nested deeper than {MAX_DATA_DEPTH} levels")
    request: dict[str, Any] = {"ch": channel, "data": params["data"]}
    key = params.get("idempotency_key")
    if key is not None:
        if not isinstance(key, str):
            raise ReplyError(ErrorCode.BAD_REQUEST, "idempotency_key must be a string")
        if key:
            request["ikey"] = key
    tags = params.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ReplyError(ErrorCode.BAD_REQUEST, "tags must map strings to strings")
        request["tags"] = tags
    if params.get("skip_history") is True:
        request["skip_history"] = True
    delta = params.get("delta", False)
    if not isinstance(delta, bool):
        raise ReplyError(ErrorCode.BAD_REQUEST, "delta must be a boolean")
    ns = node.config.namespace(channel)
    if delta or (ns is not None and ns.delta_publish):
        request["delta"] = True
    return await node.router.publish(channel, request)


async def api_history(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    ns = node.config.namespace(channel)
    if ns is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")
    if ns.history_size == 0:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
    query: HistoryQuery = history_query(params, node.config.edge.history_max_publications)
    request = history_request(channel, query)
    _, result = await node.router.request(channel, wire.OP_HISTORY, request)
    return history_result(query, result)


async def api_history_remove(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    _check_namespace(node, channel)
    await node.router.request(channel, wire.OP_HISTORY_REMOVE, {"ch": channel})
    return {}


async def api_broadcast(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    """The same publication to many channels, concurrently; one result per channel, in order."""
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channels must be a non-empty list")
    if len(channels) > MAX_BATCH:
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, f"at most {MAX_BATCH} channels")
    rest = {k: v for k, v in params.items() if k != "channels"}
    answers = await asyncio.gather(
        *(_settled(api_publish, node, {**rest, "channel": ch}) for ch in channels)
    )
    return {"responses": answers}


async def _presence(node: EdgeNode, params: dict[str, Any], op: str) -> dict[str, Any]:
    channel = _channel(params)
    ns = node.config.namespace(channel)
    if ns is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")
    if not ns.presence:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "presence is off in this namespace")
    return (await node.router.request(channel, op, {"ch": channel}))[1]


async def api_presence(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    result = await _presence(node, params, wire.OP_PRESENCE)
    return {"presence": result.get("presence") or {}}


async def api_presence_stats(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    result = await _presence(node, params, wire.OP_PRESENCE_STATS)
    return {
        "num_clients": int(result.get("num_clients", 0)),
        "num_users": int(result.get("num_users", 0)),
    }


def _partial(result: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Name the nodes that did not answer in time (clients ignore the extra field)."""
    missing = answer.get("missing")
    if isinstance(missing, list) and missing:
        result["missing"] = missing
    return result


async def api_channels(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    """Channels with subscribers on any edge, and how many, filtered by a glob."""
    pattern = census.pattern_param(params)
    answer = await ask_cluster(node, wire.SURVEY_CHANNELS, {"pattern": pattern})
    counts = answer.get("channels") or {}
    channels = {name: {"num_clients": int(n)} for name, n in counts.items()}
    return _partial({"channels": channels}, answer)


async def api_info(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    """One entry per running node: every edge process and every origin shard."""
    answer = await ask_cluster(node, wire.SURVEY_INFO, {})
    return _partial({"nodes": answer.get("nodes") or []}, answer)


async def api_disconnect(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    """Close a user's connections on every edge (all, or one client or session)."""
    order = census.disconnect_order(params)
    answer = await ask_cluster(node, wire.SURVEY_DISCONNECT, order.to_params())
    return _partial({}, answer)


async def _settled(method: ApiMethod, node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"result": await method(node, params)}
    except ReplyError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}


API_METHODS: dict[str, ApiMethod] = {
    "publish": api_publish,
    "broadcast": api_broadcast,
    "history": api_history,
    "history_remove": api_history_remove,
    "presence": api_presence,
    "presence_stats": api_presence_stats,
    "channels": api_channels,
    "info": api_info,
    "disconnect": api_disconnect,
}


async def api_batch(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    """Several commands in one request: in order, or concurrently with ``parallel``."""
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise ReplyError(ErrorCode.BAD_REQUEST, "commands must be a list")
    if len(commands) > MAX_BATCH:
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, f"at most {MAX_BATCH} commands")
    steps: list[tuple[str, ApiMethod, dict[str, Any]]] = []
    for command in commands:
        if not isinstance(command, dict) or len(command) != 1:
            raise ReplyError(ErrorCode.BAD_REQUEST, "each command is {method: params}")
        ((name, sub_params),) = command.items()
        method = API_METHODS.get(name)
        if method is None or not isinstance(sub_params, dict):
            raise ReplyError(ErrorCode.BAD_REQUEST, f"unknown or malformed command {name!r}")
        steps.append((name, method, sub_params))

    async def run(name: str, method: ApiMethod, sub_params: dict[str, Any]) -> dict[str, Any]:
        settled = await _settled(method, node, sub_params)
        return {name: settled["result"]} if "result" in settled else settled

    if params.get("parallel") is True:
        replies = await asyncio.gather(*(run(*step) for step in steps))
    else:
        replies = [await run(*step) for step in steps]
    return {"replies": list(replies)}


def request_id(request: web.Request) -> str:
    """The caller's ``X-Request-ID`` when it is a sane one, else a fresh id."""
    given = request.headers.get("X-Request-ID", "")
    if 0 < len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return secrets.token_hex(8)


async def api_handler(request: web.Request) -> web.StreamResponse:
    """Every API call gets an id, echoed in ``X-Request-ID`` and in its log line."""
    rid = request_id(request)
    started = time.perf_counter()
    response = await _serve(request)
    response.headers["X-Request-ID"] = rid
    if log.isEnabledFor(logging.DEBUG) or response.status == 401:
        level = logging.INFO if response.status == 401 else logging.DEBUG
        # Ids and outcome only: never the key, the body or the data.
        log.log(
            level,
            "api %s %d",
            request.match_info.get("method", ""),
            response.status,
            extra={
                "request_id": rid,
                "method": request.match_info.get("method", ""),
                "status": response.status,
                "channel": request.get(CHANNEL_KEY, ""),
                "remote": request.remote or "",
                "ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
    return response


async def _serve(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    expected = node.config.api_key
    given = _api_key(request)
    if not api_key_accepted(expected, given):
        # cent reads the status only; the body is for people and other clients.
        problem = "API key not accepted" if given else "API key required (X-API-Key header)"
        return _json({"error": {"code": ErrorCode.UNAUTHORIZED, "message": problem}}, status=401)
    name = request.match_info["method"]
    method = API_METHODS.get(name) or (api_batch if name == "batch" else None)
    if method is None:
        return _json(
            {"error": {"code": ErrorCode.METHOD_NOT_FOUND, "message": f"unknown method {name!r}"}},
            status=404,
        )
    settings = node.config.edge
    try:
        body = await read_body(request, settings.api_max_body, settings.http_body_timeout)
        params = json_object(body) if body else {}
    except RequestError as exc:
        return exc.response()
    if isinstance(params.get("channel"), str):
        request[CHANNEL_KEY] = params["channel"][:MAX_LOGGED_CHANNEL]
    started = time.perf_counter()
    try:
        if name == "batch":  # the one method whose answer is not wrapped in "result"
            return _json(await api_batch(node, params))
        result = await method(node, params)
    except ReplyError as exc:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.temporary:
            error["temporary"] = True
        return _json({"error": error})
    finally:
        node.metrics.api_seconds.labels(method=name).observe(time.perf_counter() - started)
    return _json({"result": result})
