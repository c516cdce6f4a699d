"""The commands beyond connect and subscribing: publish, history, refresh, sub_refresh,
presence, RPC. Each takes the client and the command and returns the reply's result."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from skyrelay.config import NamespaceConfig, Permission
from skyrelay.edge import json_codec, proxied
from skyrelay.edge.auth import Credentials, ExpiredToken, InvalidToken, TokenMismatch
from skyrelay.edge.limits import TokenBucket
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.session import (
    channel_param,
    expiry_fields,
    history_query,
    history_request,
    history_result,
    token_param,
)
from skyrelay.link import wire
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import Disconnect, DisconnectCode, ErrorCode, ReplyError
from skyrelay.protocol.messages import Command


class CommandContext(Protocol):
    """What the command handlers read and change of a connection (``edge.client.Client``):
    who it is, the process's services (``node``), and the session rules it applies."""

    id: str
    user: str
    info: Any
    expires_at: int
    publish_bucket: TokenBucket | None
    transport_name: str
    codec: ServerCodec
    headers: dict[str, str]
    meta: dict[str, Any] | None

    @property
    def node(self) -> EdgeNode: ...  # pragma: no cover
    @property
    def subs(self) -> Mapping[str, object | None]: ...  # pragma: no cover
    def namespace(self, channel: str) -> NamespaceConfig: ...  # pragma: no cover
    def permits(self, permission: Permission, channel: str) -> bool: ...  # pragma: no cover
    def verify(
        self, command: Command, now: float, expired: Exception
    ) -> Credentials: ...  # pragma: no cover
    def set_sub_expiry(self, channel: str, expires_at: int) -> None: ...  # pragma: no cover
    def log_ids(self, **more: Any) -> dict[str, Any]: ...  # pragma: no cover
    def client_info(self, channel: str = "") -> dict[str, Any]: ...  # pragma: no cover


# Longest idempotency key a client publish may carry (an extension of the protocol).
MAX_IDEMPOTENCY_KEY = 128

log = logging.getLogger("skyrelay.edge.commands")


async def publish(client: CommandContext, command: Command) -> dict[str, Any]:
    channel = channel_param(command.params)
    rate = client.node.config.edge.client_publish_rate
    if rate:
        now = time.monotonic()
        if client.publish_bucket is None:
            client.publish_bucket = TokenBucket(rate, rate, now)
        if not client.publish_bucket.take(now):
            raise ReplyError(ErrorCode.TOO_MANY_REQUESTS)
    ns = client.namespace(channel)
    # With a publish proxy the app's backend decides who may publish, instead of allow_publish.
    if not ns.publish_proxy and not client.permits(ns.allow_publish, channel):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)
    if "data" not in command.params:
        raise ReplyError(ErrorCode.BAD_REQUEST, "data required")
    if not json_codec.data_depth_ok(command.params["data"]):
        raise ReplyError(ErrorCode.BAD_REQUEST, "data nested too deeply")
    request = {"ch": channel, "data": command.params["data"], "info": client.client_info(channel)}
    if ns.delta_publish:
        request["delta"] = True
    key = command.params.get("idempotency_key")
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise ReplyError(ErrorCode.BAD_REQUEST, "idempotency_key must be a short string")
        # Scoped to the user, so one user's key never suppresses another's publication.
        request["ikey"] = f"client:{client.user}:{key}"
    if ns.publish_proxy:  # last: the backend may refuse, or rewrite what is published
        request = await proxied.publish(client, ns.publish_proxy, channel, request)
        if not json_codec.data_depth_ok(request["data"]):
            raise ReplyError(ErrorCode.INTERNAL, "the backend rewrote data too deep", True)
    await client.node.router.publish(channel, request)
    client.node.metrics.client_publications.inc()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("client publish", extra=client.log_ids(channel=channel))
    return {}


async def history(client: CommandContext, command: Command) -> dict[str, Any]:
    channel = channel_param(command.params)
    ns = client.namespace(channel)
    if not client.permits(ns.allow_history, channel):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)
    if ns.history_size == 0:
        raise ReplyError(ErrorCode.NOT_AVAILABLE)
    query = history_query(command.params, client.node.config.edge.history_max_publications)
    request = history_request(channel, query)
    _, result = await client.node.router.request(channel, wire.OP_HISTORY, request)
    return history_result(query, result)


async def refresh(client: CommandContext, command: Command) -> dict[str, Any]:
    now = time.time()
    credentials = client.verify(command, now, Disconnect(DisconnectCode.EXPIRED))
    if credentials.user != client.user:
        raise Disconnect(DisconnectCode.INVALID_TOKEN, "user mismatch")
    client.expires_at = credentials.expires_at
    return expiry_fields(client.expires_at, now)


async def _presence_call(client: CommandContext, command: Command, op: str) -> dict[str, Any]:
    channel = channel_param(command.params)
    ns = client.namespace(channel)
    if not ns.presence:
        raise ReplyError(ErrorCode.NOT_AVAILABLE)
    if not client.permits(ns.allow_presence, channel):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)
    _, result = await client.node.router.request(channel, op, {"ch": channel})
    return result


async def presence(client: CommandContext, command: Command) -> dict[str, Any]:
    result = await _presence_call(client, command, wire.OP_PRESENCE)
    return {"presence": result.get("presence") or {}}


async def presence_stats(client: CommandContext, command: Command) -> dict[str, Any]:
    result = await _presence_call(client, command, wire.OP_PRESENCE_STATS)
    return {
        "num_clients": int(result.get("num_clients", 0)),
        "num_users": int(result.get("num_users", 0)),
    }


async def rpc(client: CommandContext, command: Command) -> dict[str, Any]:
    """Forward to the app's backend (its rpc proxy) with who is asking; its answer, or its
    error, goes back to the client."""
    proxy = proxied.rpc_proxy(client.node)  # 108 first where no backend answers rpc
    method = command.params.get("method", "")
    if not isinstance(method, str):
        raise ReplyError(ErrorCode.BAD_REQUEST, "method must be a string")
    return await proxied.rpc(client, proxy, method, command.params.get("data"))


async def send(client: CommandContext, command: Command) -> None:
    return None  # async messages go to the RPC backend, which is not configured


async def sub_refresh(client: CommandContext, command: Command) -> dict[str, Any]:
    """A new subscription token for a private channel the client holds."""
    channel = channel_param(command.params)
    if channel not in client.subs:
        raise ReplyError(ErrorCode.BAD_REQUEST, "not subscribed")
    now = time.time()
    try:
        grant = client.node.verifier.verify_subscription(
            token_param(command.params), channel, client.user, client.id, now
        )
    except ExpiredToken:
        raise ReplyError(ErrorCode.EXPIRED) from None
    except (InvalidToken, TokenMismatch):
        raise Disconnect(DisconnectCode.INVALID_TOKEN) from None
    client.set_sub_expiry(channel, grant.expires_at)
    return expiry_fields(grant.expires_at, now)


Handler = Callable[[CommandContext, Command], Awaitable[dict[str, Any] | None]]

HANDLERS: dict[str, Handler] = {
    "publish": publish,
    "history": history,
    "refresh": refresh,
    "sub_refresh": sub_refresh,
    "presence": presence,
    "presence_stats": presence_stats,
    "rpc": rpc,
    "send": send,
}
