"""Pure rules of a client session: command validation, permissions, subscribe options and
reply shapes. The async orchestration in ``edge.client`` calls these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from skyrelay.config import NamespaceConfig, Permission
from skyrelay.edge.auth import NO_OVERRIDES, Overrides
from skyrelay.edge.recovery import RecoveryOutcome
from skyrelay.protocol.codes import (
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ReplyError,
    SubscribeFlag,
)

MAX_CHANNEL_LENGTH = 255
# Channels whose name starts with this need a subscription token.
PRIVATE_PREFIX = "$"
# `name#alice,bob`: a user-limited channel for the users after the last `#`.
USER_BOUNDARY = "#"


class SessionState(Enum):
    CONNECTING = "connecting"  # transport open, waiting for `connect`
    CONNECTED = "connected"
    CLOSED = "closed"


def name_ok(channel: str) -> bool:
    """Printable and not too long: no channel name ever puts a control character in a log."""
    return len(channel) <= MAX_CHANNEL_LENGTH and channel.isprintable()


def channel_param(params: dict[str, Any]) -> str:
    channel = params.get("channel")
    if not isinstance(channel, str) or not channel:
        raise Disconnect(DisconnectCode.BAD_REQUEST, "channel required")
    if not name_ok(channel):
        raise ReplyError(ErrorCode.BAD_REQUEST, "invalid channel name")
    return channel


def allowed(permission: Permission, user: str, subscribed: bool) -> bool:
    if permission == "anonymous":
        return True
    if permission == "client":
        return bool(user)
    if permission == "subscriber":
        return subscribed
    return False


def channel_users(channel: str) -> list[str] | None:
    """The users a user-limited channel (``name#alice,bob``) is for; None if it is not one."""
    _, sep, users = channel.rpartition(USER_BOUNDARY)
    return users.split(",") if sep else None


def personal_channel(namespace: str, user: str) -> str:
    """A user's personal channel in ``namespace`` (``default`` has no prefix)."""
    name = USER_BOUNDARY + user
    return name if namespace == "default" else f"{namespace}:{name}"


def check_subscribe_without_token(
    ns: NamespaceConfig, channel: str, user: str, insecure: bool
) -> None:
    """May this connection subscribe to ``channel`` with no subscription token?"""
    if insecure:
        return
    if channel.startswith(PRIVATE_PREFIX) or ns.require_subscription_token:
        raise ReplyError(ErrorCode.PERMISSION_DENIED, "subscription token required")
    if ns.allow_user_limited_channels:
        users = channel_users(channel)
        if users is not None:
            if user and user in users:
                return
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
    if not allowed(ns.allow_subscribe, user, True):
        raise ReplyError(ErrorCode.PERMISSION_DENIED)


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    recoverable: bool
    positioned: bool
    recover: bool
    offset: int
    epoch: str
    reject_unrecovered: bool
    # This client is listed in the channel's presence.
    presence: bool = False
    # Its joins and leaves are announced (only where it is in presence).
    emit_join_leave: bool = False
    # Joins and leaves of the others are pushed to it.
    push_join_leave: bool = False
    # ``chan_info`` of its ClientInfo in this channel (the subscription token's ``info``).
    chan_info: Any = None


def _pick(override: bool | None, default: bool) -> bool:
    return default if override is None else override


def stream_options(
    ns: NamespaceConfig,
    overrides: Overrides,
    *,
    recoverable: bool,
    positioned: bool,
    join_leave: bool,
    chan_info: Any,
) -> SubscribeOptions:
    """Recovery, positioning, presence and join/leave of a subscription, before its recovery
    request: what the client asks (``recoverable``, ``positioned``, ``join_leave``) within what
    the namespace allows, the token's overrides over both."""
    history_on = ns.history_size > 0
    recoverable = history_on and (recoverable or _pick(overrides.force_recovery, ns.force_recovery))
    positioned = recoverable or (
        history_on and (positioned or _pick(overrides.force_positioning, ns.force_positioning))
    )
    presence = _pick(overrides.presence, ns.presence)
    emits = _pick(overrides.join_leave, ns.join_leave)
    pushed = join_leave or _pick(overrides.force_push_join_leave, ns.force_push_join_leave)
    return SubscribeOptions(
        recoverable,
        positioned,
        False,
        0,
        "",
        False,
        presence=presence,
        emit_join_leave=presence and emits,
        push_join_leave=emits and pushed,
        chan_info=chan_info,
    )


def subscribe_options(
    ns: NamespaceConfig,
    params: dict[str, Any],
    overrides: Overrides = NO_OVERRIDES,
    chan_info: Any = None,
) -> SubscribeOptions:
    """What the subscribe asks for, within what the namespace allows."""
    if params.get("tf"):
        raise ReplyError(ErrorCode.BAD_REQUEST, "tags filters are not supported")
    if params.get("type"):
        raise ReplyError(ErrorCode.NOT_AVAILABLE, "map subscriptions are not supported")
    flag = params.get("flag", 0)
    reject = isinstance(flag, int) and not isinstance(flag, bool)
    reject = reject and bool(flag & SubscribeFlag.REJECT_UNRECOVERED)
    # `recover` with the reject flag but without `recoverable` is how SDKs with a getState
    # hook resume from the position the app loaded: they ask for recovery, and for 112 if it
    # fails (so they load the state again), as a recoverable subscription would.
    asks_recovery = params.get("recoverable") is True or (reject and params.get("recover") is True)
    base = stream_options(
        ns,
        overrides,
        recoverable=asks_recovery,
        positioned=params.get("positioned") is True,
        join_leave=params.get("join_leave") is True,
        chan_info=chan_info,
    )
    offset, epoch = stream_position(params)
    return dataclasses.replace(
        base,
        recover=base.recoverable and params.get("recover") is True,
        offset=offset,
        epoch=epoch,
        reject_unrecovered=reject,
    )


def stream_position(params: dict[str, Any]) -> tuple[int, str]:
    """``offset`` and ``epoch`` of a recovery request (subscribe, or a connect's ``subs``)."""
    offset = params.get("offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ReplyError(ErrorCode.BAD_REQUEST, "offset must be a non-negative integer")
    epoch = params.get("epoch", "")
    if not isinstance(epoch, str):
        raise ReplyError(ErrorCode.BAD_REQUEST, "epoch must be a string")
    return offset, epoch


def subscribe_result(
    options: SubscribeOptions,
    epoch: str,
    offset: int,
    outcome: RecoveryOutcome | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if options.recoverable:
        result["recoverable"] = True
    if options.positioned:
        result["positioned"] = True
        result["epoch"] = epoch
        result["offset"] = offset
    if outcome is not None:
        result["was_recovering"] = True
        result["epoch"] = outcome.epoch
        result["offset"] = outcome.offset
        if outcome.recovered:
            result["recovered"] = True
        if outcome.publications:
            result["publications"] = outcome.publications
    return result


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    limit: int
    since_offset: int | None
    since_epoch: str
    reverse: bool


def history_query(params: dict[str, Any], max_publications: int) -> HistoryQuery:
    limit = params.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ReplyError(ErrorCode.BAD_REQUEST, "limit must be an integer")
    if limit < 0 or limit > max_publications:
        limit = max_publications
    reverse = params.get("reverse") is True
    since = params.get("since")
    since_offset: int | None = None
    since_epoch = ""
    if since is not None:
        if not isinstance(since, dict):
            raise ReplyError(ErrorCode.BAD_REQUEST, "since must be an object")
        raw_offset = since.get("offset", 0)
        since_epoch = since.get("epoch", "")
        if isinstance(raw_offset, bool) or not isinstance(raw_offset, int) or raw_offset < 0:
            raise ReplyError(ErrorCode.BAD_REQUEST, "since.offset must be a non-negative integer")
        if not isinstance(since_epoch, str):
            raise ReplyError(ErrorCode.BAD_REQUEST, "since.epoch must be a string")
        since_offset = raw_offset
        if reverse and since_offset == 0:
            raise ReplyError(ErrorCode.BAD_REQUEST, "reverse history needs since.offset")
    return HistoryQuery(limit, since_offset, since_epoch, reverse)


def history_request(channel: str, query: HistoryQuery) -> dict[str, Any]:
    """The edge-link ``history`` request for a validated query."""
    request: dict[str, Any] = {"ch": channel, "limit": query.limit}
    if query.since_offset is not None:
        request["since"] = query.since_offset
    if query.reverse:
        request["reverse"] = True
    return request


def token_param(params: dict[str, Any]) -> str:
    token = params.get("token", "")
    if not isinstance(token, str):
        raise Disconnect(DisconnectCode.BAD_REQUEST, "token must be a string")
    return token


def expiry_fields(expires_at: int, now: float) -> dict[str, Any]:
    """``expires``/``ttl`` of connect and refresh replies; empty for a token without expiry."""
    if not expires_at:
        return {}
    return {"expires": True, "ttl": max(1, int(expires_at - now))}


def history_result(query: HistoryQuery, result: dict[str, Any]) -> dict[str, Any]:
    epoch = str(result.get("epoch", ""))
    if query.since_epoch and query.since_epoch != epoch:
        raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
    return {
        "publications": result.get("publications") or [],
        "epoch": epoch,
        "offset": int(result.get("offset", 0)),
    }
