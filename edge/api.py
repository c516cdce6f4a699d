"""The server API on the edge: ``POST /api/<method>`` with ``X-API-Key``, routed to the owner
shard through the ring. Answers follow Centrifugo's HTTP API so that ``cent`` works."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from edge.codes import ErrorCode, ReplyError
from edge.node import NODE_KEY, EdgeNode
from edge.protocol import MAX_DATA_DEPTH, data_depth_ok
from edge.session import HistoryQuery, history_query, history_request, history_result
from skyrelay import edgelink

ApiMethod = Callable[[EdgeNode, dict[str, Any]], Awaitable[dict[str, Any]]]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _bad_request(message: str) -> web.Response:
    return _json({"error": {"code": ErrorCode.BAD_REQUEST, "message": message}}, status=400)


def _api_key(request: web.Request) -> str:
    key = request.headers.get("X-API-Key")
    if key is None:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "apikey":
            key = value.strip()
    if key is None:
        key = request.query.get("api_key", "")
    return key


def _channel(params: dict[str, Any]) -> str:
    channel = params.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channel is required")
    if not channel.isprintable() or len(channel) > 255:
        raise ReplyError(ErrorCode.BAD_REQUEST, "invalid channel name")
    return channel


def _check_namespace(node: EdgeNode, channel: str) -> None:
    if node.config.namespace(channel) is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")


async def api_publish(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    _check_namespace(node, channel)
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
    return (await node.router.request(channel, edgelink.OP_PUB, request))[1]


async def api_history(node: EdgeNode, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    ns = node.config.namespace(channel)
    if ns is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace in channel {channel!r}")
    if ns.history_size == 0:
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "history is off in this namespace")
    query: HistoryQuery = history_query(params, node.config.edge.history_max_publications)
    request = history_request(channel, query)
    _, result = await node.router.request(channel, edgelink.OP_HISTORY, request)
    return history_result(query, result)


API_METHODS: dict[str, ApiMethod] = {
    "publish": api_publish,
    "history": api_history,
}


async def api_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    expected = node.config.api_key
    if not expected or not hmac.compare_digest(_api_key(request).encode(), expected.encode()):
        return web.Response(status=401)
    name = request.match_info["method"]
    method = API_METHODS.get(name)
    if method is None:
        return _json(
            {"error": {"code": ErrorCode.METHOD_NOT_FOUND, "message": f"unknown method {name!r}"}},
            status=404,
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _json(
            {"error": {"code": ErrorCode.BAD_REQUEST, "message": "request body too large"}},
            status=413,
        )
    try:
        params = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return _bad_request("body is not valid JSON")
    if not isinstance(params, dict):
        return _bad_request("body must be a JSON object")
    try:
        result = await method(node, params)
    except ReplyError as exc:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.temporary:
            error["temporary"] = True
        return _json({"error": error})
    return _json({"result": result})
