"""Surveys at a shard: ask every edge link for its part, wait at most
``origin.survey_timeout``, merge (``origin.tally``) and answer the edge that asked. For ``info``
the other shards are asked for their own entry over the links between shards."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Hashable, Mapping, Set
from typing import Any, Protocol

from skyrelay import VERSION
from skyrelay.link import wire
from skyrelay.link.client import LinkClient
from skyrelay.origin.shard import Shard
from skyrelay.origin.tally import Tally, check_survey, survey_result
from skyrelay.protocol.codes import ErrorCode, ReplyError
from skyrelay.runtime.tasks import spawn

log = logging.getLogger("skyrelay.origin.survey")


class SurveyPeer(Hashable, Protocol):
    """A link connected to this shard (an edge process, or another shard)."""

    @property
    def name(self) -> str: ...  # pragma: no cover
    @property
    def answers_surveys(self) -> bool: ...  # pragma: no cover
    def send(self, message: bytes) -> None: ...  # pragma: no cover


class Surveyor:
    def __init__(
        self, shard: Shard, peers: Set[SurveyPeer], links: Mapping[str, LinkClient]
    ) -> None:
        self.shard = shard
        self.peers = peers
        # Links to the other shards, for their node entries.
        self.links = links
        self._ids = itertools.count(1)
        self._rounds: dict[int, tuple[Tally, asyncio.Future[None]]] = {}

    def handles(self, peer: SurveyPeer, message: dict[str, Any]) -> bool:
        """Take the survey traffic off a link; False leaves the message to the shard."""
        answer = message.get("answer")
        if answer is not None:
            if isinstance(answer, dict):
                self._on_answer(peer, answer)
            return True
        op = message.get("op")
        if op not in (wire.OP_SURVEY, wire.OP_NODE_INFO):
            return False
        req_id = message.get("id")
        if isinstance(req_id, bool) or not isinstance(req_id, int):
            log.warning("link %s sent a %s request without id", peer.name, op)
        elif op == wire.OP_NODE_INFO:
            peer.send(wire.result(req_id, self.own_info()))
        else:
            spawn(self._respond(peer, req_id, message))
        return True

    def own_info(self) -> dict[str, Any]:
        """This shard's node entry. Origins hold no client connections, so their client and
        user counts are 0; channels are those it leads, subs the edge subscriptions to them."""
        shard = self.shard
        return {
            "uid": shard.uid,
            "name": shard.id,
            "version": VERSION,
            "num_clients": 0,
            "num_users": 0,
            "num_channels": shard.replicator.leading(),
            "num_subs": sum(len(peers) for peers in shard.subscribers.values()),
            "uptime": int(time.monotonic() - shard.started),
        }

    def drop_peer(self, peer: SurveyPeer) -> None:
        """A link went away: rounds stop waiting for it."""
        for tally, finished in self._rounds.values():
            if tally.lost(peer) and not finished.done():
                finished.set_result(None)

    async def run(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask every edge (and, for ``info``, every shard); merge what came back in time."""
        timeout = self.shard.config.origin.survey_timeout
        asked = [p for p in self.peers if p.answers_surveys]
        tally = Tally(kind, ((p, p.name) for p in asked))
        shard_calls = self._ask_shards(timeout) if kind == wire.SURVEY_INFO else {}
        sid = next(self._ids)
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rounds[sid] = (tally, finished)
        try:
            if not tally.done:
                frame = wire.survey(sid, kind, params)
                for peer in asked:
                    peer.send(frame)
                await asyncio.wait([finished], timeout=timeout)
        finally:
            del self._rounds[sid]
        if kind != wire.SURVEY_INFO:
            return survey_result(tally)
        nodes, missing = await _collect(shard_calls)
        return survey_result(tally, [self.own_info(), *nodes], missing)

    def _ask_shards(self, timeout: float) -> dict[str, asyncio.Future[dict[str, Any]] | None]:
        """Every other shard of the config, asked over its link (None: no link yet)."""
        calls: dict[str, asyncio.Future[dict[str, Any]] | None] = {}
        for other in self.shard.config.shards:
            if other.id != self.shard.id:
                link = self.links.get(other.id)
                calls[other.id] = (
                    None if link is None else link.call(wire.OP_NODE_INFO, {}, timeout)
                )
        return calls

    def _on_answer(self, peer: SurveyPeer, answer: dict[str, Any]) -> None:
        sid = answer.get("sid")
        entry = self._rounds.get(sid) if isinstance(sid, int) else None
        if entry is None:
            return  # late: its round is over
        tally, finished = entry
        body = answer.get("result")
        if tally.record(peer, body if isinstance(body, dict) else None) and not finished.done():
            finished.set_result(None)

    async def _respond(self, peer: SurveyPeer, req_id: int, message: dict[str, Any]) -> None:
        try:
            kind, params = check_survey(message)
            peer.send(wire.result(req_id, await self.run(kind, params)))
        except ReplyError as exc:
            peer.send(wire.error(req_id, exc.code, exc.message, exc.temporary))
        except Exception:
            log.exception("survey failed")
            peer.send(wire.error(req_id, ErrorCode.INTERNAL, "internal", temporary=True))


async def _collect(
    calls: Mapping[str, asyncio.Future[dict[str, Any]] | None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The shards' node entries, and the shards that gave none (each call has its deadline)."""
    pending = [call for call in calls.values() if call is not None]
    if pending:
        await asyncio.wait(pending)
    nodes: list[dict[str, Any]] = []
    missing: list[str] = []
    for shard_id, call in calls.items():
        if call is not None and call.exception() is None:
            nodes.append(call.result())
        else:
            missing.append(shard_id)
    return nodes, missing
