"""``POST /connection/longpoll``: Skyrelay's own long-poll, for networks that buffer streams.

Each request carries the token and where the client stands (a ``cursor`` from the previous
answer, or ``channels`` with positions). The edge answers at once with what the client missed,
or holds the request until a publication arrives or ``timeout`` passes. Stateless between
requests: any edge can answer any request, and a dropped request loses nothing.

Request:  {"token": "...", "channels": {"news": {"offset": 7, "epoch": "ab"}, "chat": {}},
           "cursor": "...", "timeout": 25, "limit": 100}
Answer:   {"publications": [{"channel": "news", "offset": 8, "data": {...}}, ...],
           "cursor": "...", "positions": {"news": {"offset": 8, "epoch": "ab"}},
           "unrecovered": ["chat"]}

A request may also carry publications (``publish``, see ``edge.longpoll_publish``); it is
then answered at once, with ``published``, and ``channels`` may be empty.

A channel in ``unrecovered`` could not be continued from the given position (another epoch,
or history trimmed): its position moved to the current top, and the client should reload.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from skyrelay.edge.auth import ANONYMOUS, Credentials, ExpiredToken, InvalidToken
from skyrelay.edge.bodies import RequestError, read_json
from skyrelay.edge.channel import Channel
from skyrelay.edge.cors import cors_checked
from skyrelay.edge.hub import Hub
from skyrelay.edge.longpoll_publish import check_items, publish_all
from skyrelay.edge.node import NODE_KEY, EdgeNode
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.recovery import decide_recovery
from skyrelay.edge.session import check_subscribe_without_token, name_ok
from skyrelay.protocol.codes import DisconnectCode, ErrorCode, ReplyError

# Channels one long-poll request may follow.
MAX_CHANNELS = 64
# Publications one answer may carry per channel.
MAX_BATCH = 300

Positions = dict[str, tuple[str, int]]


def encode_cursor(positions: Positions) -> str:
    raw = orjson.dumps({ch: [epoch, offset] for ch, (epoch, offset) in positions.items()})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Positions:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        return {str(ch): (str(pos[0]), int(pos[1])) for ch, pos in data.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise RequestError(400, "invalid cursor", ErrorCode.BAD_REQUEST) from None


class Waiter:
    """Stands in the hub like a subscriber while the request waits."""

    __slots__ = ("arrived", "pubs")

    def __init__(self) -> None:
        self.pubs: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def deliver(self, message: Outgoing) -> None:
        for single in message.singles():
            push = orjson.loads(single.payload)["push"]
            self.pubs.append({"channel": push["channel"], **push["pub"]})
        self.arrived.set()

    def lost_channel(self, channel: str, code: int, reason: str) -> None:
        self.arrived.set()

    def wants_join_leave(self, channel: str) -> bool:
        return False


def poll_bounds(body: dict[str, Any], longest: float) -> tuple[float, int]:
    """How long to hold the request (at most ``longest``) and how many publications per
    channel to answer with. NaN or infinity would reach the event loop's timers: refused."""
    timeout = body.get("timeout", longest)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise RequestError(400, "timeout must be a number of seconds", ErrorCode.BAD_REQUEST)
    if not math.isfinite(timeout):
        raise RequestError(400, "timeout must be finite", ErrorCode.BAD_REQUEST)
    limit = body.get("limit", MAX_BATCH)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise RequestError(400, "limit must be an integer", ErrorCode.BAD_REQUEST)
    return max(0.0, min(float(timeout), longest)), max(1, min(limit, MAX_BATCH))


def _request_positions(body: dict[str, Any]) -> Positions | dict[str, None]:
    cursor = body.get("cursor")
    if isinstance(cursor, str) and cursor:
        return decode_cursor(cursor)
    channels = body.get("channels")
    if "publish" in body and channels in (None, {}):
        return {}
    if not isinstance(channels, dict) or not channels:
        raise RequestError(400, "channels (or cursor) required", ErrorCode.BAD_REQUEST)
    found: dict[str, Any] = {}
    for name, position in channels.items():
        if isinstance(position, dict) and "offset" in position:
            found[name] = (str(position.get("epoch", "")), int(position["offset"]))
        else:
            found[name] = None
    return found


async def _poll(node: EdgeNode, body: dict[str, Any]) -> dict[str, Any]:
    credentials = await _credentials(node, body.get("token"))
    wanted = _request_positions(body)
    _check_channels(node, wanted, credentials.user)
    timeout, limit = poll_bounds(body, node.config.edge.longpoll_timeout)
    published: list[dict[str, Any]] | None = None
    if "publish" in body:
        items = check_items(body["publish"])
        published = await publish_all(node, credentials.user, items, set(wanted))
        timeout = 0.0  # the sender waits for its acks: answer at once
    pubs, positions, unrecovered = await _collect(node.hub, wanted, timeout, limit)
    for pub in pubs:
        name, offset = pub["channel"], pub.get("offset", 0)
        if offset:
            positions[name] = (positions[name][0], max(positions[name][1], offset))
    answer: dict[str, Any] = {
        "publications": pubs,
        "cursor": encode_cursor(positions),
        "positions": {ch: {"offset": o, "epoch": e} for ch, (e, o) in positions.items()},
        "unrecovered": unrecovered,
    }
    if published is not None:
        answer["published"] = published
    return answer


async def _credentials(node: EdgeNode, token: Any) -> Credentials:
    """Who polls: the token's user, or anonymous where the edge allows it."""
    if not token and node.anonymous_allowed():
        return ANONYMOUS
    await node.fetch_keys(token)
    try:
        return node.verifier.verify_connection(token if isinstance(token, str) else "", time.time())
    except ExpiredToken:
        raise RequestError(401, "token expired", ErrorCode.TOKEN_EXPIRED) from None
    except InvalidToken:
        raise RequestError(401, "invalid token", DisconnectCode.INVALID_TOKEN) from None


def _check_channels(node: EdgeNode, wanted: dict[str, Any], user: str) -> None:
    """Every channel asked for exists and may be followed without a subscription token."""
    if len(wanted) > MAX_CHANNELS:
        raise RequestError(400, f"at most {MAX_CHANNELS} channels", ErrorCode.LIMIT_EXCEEDED)
    for name in wanted:
        if not name_ok(name):
            raise RequestError(400, "invalid channel name", ErrorCode.BAD_REQUEST)
        ns = node.config.namespace(name)
        if ns is None or not ns.name_allowed(name):
            raise RequestError(400, f"unknown channel {name!r}", ErrorCode.UNKNOWN_CHANNEL)
        try:
            check_subscribe_without_token(ns, name, user, node.config.edge.insecure)
        except ReplyError:
            raise RequestError(
                403, f"may not follow {name!r}", ErrorCode.PERMISSION_DENIED
            ) from None


async def _collect(
    hub: Hub, wanted: Mapping[str, tuple[str, int] | None], wait: float, limit: int
) -> tuple[list[dict[str, Any]], Positions, list[str]]:
    """Hold the channels, catch up from each position, then wait up to ``wait`` seconds for
    publications if there is nothing to answer yet. Returns the publications, the positions
    they reach and the channels that could not be recovered."""
    waiter = Waiter()
    held: dict[str, Channel] = {}
    try:
        for name in wanted:
            held[name] = await hub.acquire(name)
            hub.start_join(held[name], waiter)
        pubs, positions, unrecovered = await _catch_up(hub, held, wanted, limit, waiter)
        if not pubs and not unrecovered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.arrived.wait(), wait)
            pubs = waiter.pubs
        else:
            pubs += waiter.pubs
    finally:
        for channel in held.values():
            hub.release(channel, waiter)
    return pubs, positions, unrecovered


async def _catch_up(
    hub: Hub,
    held: dict[str, Channel],
    wanted: Mapping[str, tuple[str, int] | None],
    limit: int,
    waiter: Waiter,
) -> tuple[list[dict[str, Any]], Positions, list[str]]:
    """What each channel holds after its position (all or nothing, as recovery decides),
    then what arrived while that was read; the waiter is live for each channel after it."""
    pubs: list[dict[str, Any]] = []
    positions: Positions = {}
    unrecovered: list[str] = []
    tops: dict[str, int] = {}
    for name, channel in held.items():
        position = wanted[name]
        if position is None:
            tops[name] = channel.offset
            positions[name] = (channel.epoch, channel.offset)
            continue
        epoch, offset = position
        page = await hub.read(channel, offset, limit + 1)
        top = int(page.get("offset", 0))
        outcome = decide_recovery(
            offset, epoch, page.get("publications") or [], str(page.get("epoch", "")), top, limit
        )
        if not outcome.recovered:
            unrecovered.append(name)
        pubs += [{"channel": name, **p} for p in outcome.publications]
        tops[name] = top
        positions[name] = (outcome.epoch, top)
    for name, channel in held.items():
        for pub in hub.finish_join(channel, waiter):
            if pub.get("offset", 0) > tops[name]:
                pubs.append({"channel": name, **pub})
    return pubs, positions, unrecovered


@cors_checked
async def longpoll_handler(request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    settings = node.config.edge
    body = await read_json(request, settings.max_message_size, settings.http_body_timeout)
    try:
        answer = await _poll(node, body)
    except (ValueError, TypeError):
        raise RequestError(400, "offset, timeout and limit must be numbers") from None
    except ReplyError as exc:
        raise RequestError(503 if exc.temporary else 400, exc.message, exc.code) from None
    return web.Response(
        body=orjson.dumps(answer),
        content_type="application/json",
        headers={**cors, "Cache-Control": "no-store"},
    )
