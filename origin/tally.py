"""Surveys, the pure part: who was asked, who answered, and the cluster-wide result a shard
makes of the answers (channel counts summed, node entries listed, disconnections counted)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from skyrelay.link import wire
from skyrelay.protocol.codes import ErrorCode, ReplyError


class Tally:
    """One survey round. Peers are keyed by link but counted by name: an edge that
    reconnected may briefly have two links here, and it must be counted once."""

    def __init__(self, kind: str, asked: Iterable[tuple[Hashable, str]]) -> None:
        self.kind = kind
        self.waiting: dict[Hashable, str] = dict(asked)
        # name -> its answer, in the order they came.
        self.answers: dict[str, dict[str, Any]] = {}
        # Names that failed (answered an error, or their link went away).
        self.failed: set[str] = set()

    @property
    def done(self) -> bool:
        return not self.waiting

    def record(self, peer: Hashable, body: dict[str, Any] | None) -> bool:
        """``peer`` answered (``None``: with an error); returns True once nobody is waiting."""
        name = self.waiting.pop(peer, None)
        if name is None:
            return self.done  # not asked, or already answered: ignored
        if body is None:
            if name not in self.answers:
                self.failed.add(name)
        elif name not in self.answers:
            self.answers[name] = body
            self.failed.discard(name)
            # Other links of the same peer need not be waited for.
            for other in [p for p, n in self.waiting.items() if n == name]:
                del self.waiting[other]
        return self.done

    def lost(self, peer: Hashable) -> bool:
        """``peer``'s link went away before it answered."""
        return self.record(peer, None)

    def missing(self) -> list[str]:
        """Names asked that gave no answer (in time, or at all)."""
        names = set(self.waiting.values()) | self.failed
        return sorted(names - self.answers.keys())


def merge_channels(answers: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Each edge's ``{channel: clients}`` summed over the edges."""
    total: dict[str, int] = {}
    for answer in answers:
        channels = answer.get("channels")
        if not isinstance(channels, dict):
            continue
        for name, count in channels.items():
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                total[name] = total.get(name, 0) + count
    return total


def merge_disconnects(answers: Iterable[dict[str, Any]]) -> int:
    total = 0
    for answer in answers:
        count = answer.get("disconnected")
        if isinstance(count, int) and not isinstance(count, bool):
            total += count
    return total


def merge_nodes(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Node entries that name themselves, ordered by name (then uid) for stable output."""
    nodes = [e for e in entries if isinstance(e.get("uid"), str) and isinstance(e.get("name"), str)]
    return sorted(nodes, key=lambda e: (e["name"], e["uid"]))


def survey_result(
    tally: Tally, shard_nodes: Iterable[dict[str, Any]] = (), shards_missing: Iterable[str] = ()
) -> dict[str, Any]:
    """The merged answer for the edge that asked; ``missing`` names who did not answer."""
    answers = list(tally.answers.values())
    missing = sorted({*tally.missing(), *shards_missing})
    result: dict[str, Any]
    if tally.kind == wire.SURVEY_CHANNELS:
        result = {"channels": merge_channels(answers)}
    elif tally.kind == wire.SURVEY_DISCONNECT:
        result = {"disconnected": merge_disconnects(answers)}
    elif tally.kind == wire.SURVEY_INFO:
        edges = [a["node"] for a in answers if isinstance(a.get("node"), dict)]
        result = {"nodes": merge_nodes([*edges, *shard_nodes])}
    else:
        raise ReplyError(ErrorCode.BAD_REQUEST, f"unknown survey kind {tally.kind!r}")
    if missing:
        result["missing"] = missing
    return result


def check_survey(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kind and params of a ``survey`` request, or a bad-request error."""
    kind = message.get("kind")
    if kind not in wire.SURVEY_KINDS:
        raise ReplyError(ErrorCode.BAD_REQUEST, f"unknown survey kind {kind!r}")
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise ReplyError(ErrorCode.BAD_REQUEST, "survey params must be an object")
    return str(kind), params
