"""Publishes to one shard in one loop turn travel as one request (link op ``pubs``): a server
API batch, many clients publishing at once, all cost the leader one request, one ordering per
channel and one commit wait, instead of one of each per publication.

A publication the batch could not place (its shard was not the leader, the link went down)
goes again on its own through ``Router.request``, which follows redirects and waits out a
failover, so batching never changes an answer.

What belongs here: grouping, one request per shard, spreading its results. What never does:
validating publications (the API and the commands do) or routing rules (``edge.router``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.protocol.codes import ErrorCode, ReplyError

# A publication with its channel (``ch``) and the future its publisher awaits.
Pending = tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]


class NotSent(Exception):
    """The batch never left: its link was down. Safe to send again."""


class PublishBatcher:
    __slots__ = ("_links", "_pending", "_timeout")

    def __init__(self, links: dict[str, LinkClient], timeout: float) -> None:
        self._links = links
        self._timeout = timeout
        self._pending: dict[str, list[Pending]] = {}

    def publish(self, shard: str, item: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Queue ``item`` for ``shard``; the future holds its result or its error (``NotSent``
        when the request never left)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault(shard, []).append((item, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for shard, batch in pending.items():
            link = self._links[shard]
            if not link.is_up:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(NotSent(shard))
                continue
            request = link.call(wire.OP_PUBS, {"items": [i for i, _ in batch]}, self._timeout)
            request.add_done_callback(functools.partial(_spread, batch=batch))


def _spread(done: asyncio.Future[dict[str, Any]], *, batch: list[Pending]) -> None:
    if done.cancelled():
        error: BaseException | None = ReplyError(ErrorCode.INTERNAL, "publish cancelled", True)
        results = None
    else:
        error = done.exception()
        results = None if error is not None else done.result().get("results")
    if error is None and (not isinstance(results, list) or len(results) != len(batch)):
        error = ReplyError(ErrorCode.INTERNAL, "malformed pubs answer", True)
    for index, (_, future) in enumerate(batch):
        if future.done():
            continue
        if error is not None or results is None:
            future.set_exception(error or ReplyError(ErrorCode.INTERNAL, "no answer", True))
            continue
        outcome = results[index]
        if isinstance(outcome, dict) and isinstance(outcome.get("result"), dict):
            future.set_result(outcome["result"])
        elif isinstance(outcome, dict) and isinstance(outcome.get("error"), dict):
            future.set_exception(ReplyError.from_body(outcome["error"]))
        else:
            future.set_exception(ReplyError(ErrorCode.INTERNAL, "malformed pubs result", True))
