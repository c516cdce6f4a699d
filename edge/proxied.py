"""What the proxies to the app's backend ask, command by command, and what the edge does with
the answer: the requests of Centrifugo's HTTP proxies, so an existing backend works
unchanged. The calls go through ``edge.backend``; the replies are read by
``edge.proxy_replies``.
"""

from __future__ import annotations

from typing import Any, Protocol

from skyrelay.edge.backend import RPC_URL_PROXY
from skyrelay.edge.node import EdgeNode
from skyrelay.edge.proxy_replies import (
    ConnectGrant,
    Extension,
    SubscribeGrant,
    connect_grant,
    extension,
    publish_rewrite,
    rpc_data,
    subscribe_grant,
)
from skyrelay.protocol.codec import ServerCodec
from skyrelay.protocol.codes import ErrorCode, ReplyError


class Caller(Protocol):
    """The connection a proxy call is for (``edge.client.Client``)."""

    id: str
    user: str
    transport_name: str
    codec: ServerCodec
    # Its request headers that some proxy passes on (lower-case names).
    headers: dict[str, str]
    # What the connect proxy said to keep with the connection (``meta``), or None.
    meta: dict[str, Any] | None

    @property
    def node(self) -> EdgeNode: ...  # pragma: no cover


def _request(caller: Caller, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client": caller.id,
        "transport": caller.transport_name,
        "protocol": caller.codec.NAME,
        "encoding": "json",
    }
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


async def _ask(
    caller: Caller, proxy: str, kind: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    """A request for a connected client: its user is checked in the reply, its meta goes
    where the proxy includes it."""
    return await caller.node.backend.call(
        proxy, kind, body, caller.headers, caller.user, caller.meta
    )


async def connect(caller: Caller, proxy: str, params: dict[str, Any]) -> ConnectGrant | None:
    """Who a connect without a token is; None when the backend does not say."""
    name, version = params.get("name"), params.get("version")
    body = _request(
        caller,
        data=params.get("data"),
        name=name if isinstance(name, str) else None,
        version=version if isinstance(version, str) else None,
    )
    result = await caller.node.backend.call(proxy, "connect", body, caller.headers)
    return connect_grant(result)


async def refresh(caller: Caller, proxy: str) -> Extension:
    body = _request(caller, user=caller.user)
    result = await _ask(caller, proxy, "refresh", body)
    return extension(result)


async def subscribe(
    caller: Caller, proxy: str, channel: str, params: dict[str, Any]
) -> SubscribeGrant:
    body = _request(caller, user=caller.user, channel=channel, data=params.get("data"))
    result = await _ask(caller, proxy, "subscribe", body)
    return subscribe_grant(result)


async def publish(
    caller: Caller, proxy: str, channel: str, request: dict[str, Any]
) -> dict[str, Any]:
    """The publish request the backend allows, maybe rewritten; its refusal raises."""
    body = _request(caller, user=caller.user, channel=channel, data=request.get("data"))
    result = await _ask(caller, proxy, "publish", body)
    return publish_rewrite(result, request)


async def sub_refresh(caller: Caller, proxy: str, channel: str) -> Extension:
    body = _request(caller, user=caller.user, channel=channel)
    result = await _ask(caller, proxy, "sub_refresh", body)
    return extension(result)


def rpc_proxy(node: EdgeNode) -> str:
    """The proxy that answers ``rpc``; 108 (not available) when there is none."""
    settings = node.config.edge
    if settings.rpc_proxy:
        return settings.rpc_proxy
    if settings.rpc_url:
        return RPC_URL_PROXY
    raise ReplyError(ErrorCode.NOT_AVAILABLE)


async def rpc(caller: Caller, proxy: str, method: str, data: Any) -> dict[str, Any]:
    body = _request(caller, user=caller.user, method=method, data=data)
    result = await _ask(caller, proxy, "rpc", body)
    return rpc_data(result)
