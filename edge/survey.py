"""Surveys at an edge: answer a shard's survey with this process's part, and ask one shard to
survey the whole cluster for the server API (``channels``, ``info``, ``disconnect``).

Edges never talk to each other: every edge process links to every shard, so any one shard
can reach them all."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from skyrelay import VERSION
from skyrelay.edge import census
from skyrelay.edge.node import EdgeNode
from skyrelay.link import wire
from skyrelay.protocol.codes import ErrorCode, ReplyError

log = logging.getLogger("skyrelay.edge.survey")

# Spreads surveys over the shards: each call starts one shard further on.
_turns = itertools.count()


def answer_survey(node: EdgeNode, survey: dict[str, Any]) -> dict[str, Any]:
    """This process's part of a survey; runs to completion without waiting."""
    kind = survey.get("kind")
    params = survey.get("params", {})
    if not isinstance(params, dict):
        raise ReplyError(ErrorCode.BAD_REQUEST, "survey params must be an object")
    clients = list(node.clients.values())
    if kind == wire.SURVEY_CHANNELS:
        match = census.channel_matcher(census.pattern_param(params))
        return {"channels": census.count_channels(clients, match)}
    if kind == wire.SURVEY_INFO:
        entry: dict[str, Any] = {"uid": node.uid, "name": node.id, "version": VERSION}
        entry.update(census.node_stats(clients))
        entry["uptime"] = int(time.monotonic() - node.started)
        return {"node": entry}
    if kind == wire.SURVEY_DISCONNECT:
        order = census.disconnect_order(params)
        victims = [client for client in clients if order.matches(client)]
        for client in victims:
            client.close(order.code, order.reason)
        if victims:
            log.info("disconnected %d connection(s) with %d by API", len(victims), order.code)
        return {"disconnected": len(victims)}
    raise ReplyError(ErrorCode.BAD_REQUEST, f"unknown survey kind {kind!r}")


def survey_order(shards: Sequence[str], is_up: Callable[[str], bool], turn: int) -> list[str]:
    """Shards to ask, in order: the healthy ones first, each list rotated by ``turn``."""
    if not shards:
        return []
    start = turn % len(shards)
    rotated = [*shards[start:], *shards[:start]]
    return [s for s in rotated if is_up(s)] + [s for s in rotated if not is_up(s)]


async def ask_cluster(node: EdgeNode, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The merged survey result from the first shard that answers. A shard that cannot be
    reached or does not answer within twice ``origin.survey_timeout`` is passed over."""
    router = node.router
    wait = 2 * node.config.origin.survey_timeout
    failures: list[str] = []
    for shard_id in survey_order(list(router.links), router.health.is_up, next(_turns)):
        link = router.links[shard_id]
        if not link.is_up:
            failures.append(f"shard {shard_id} is unreachable")
            continue
        try:
            return await link.call(wire.OP_SURVEY, {"kind": kind, "params": params}, wait)
        except ReplyError as exc:
            if not exc.temporary:
                raise
            failures.append(exc.message)
    raise ReplyError(
        ErrorCode.INTERNAL,
        "no shard could survey the cluster: " + ("; ".join(failures) or "no shards"),
        temporary=True,
    )
