"""The follower side of replication: claims, appends and installs from other shards, applied
to this shard's replica of the channel (the rules are ``origin.replica``'s) and written to its
storage. The answer goes back over the link once the write is durable (``origin.link``).
"""

from __future__ import annotations

from typing import Any

from skyrelay.link import wire
from skyrelay.origin.replication import Replicator
from skyrelay.protocol.codes import ErrorCode, ReplyError


def handle(replicator: Replicator, op: str, message: dict[str, Any]) -> dict[str, Any]:
    """A replication request from another shard (``wire.PEER_OPS``); the answer's body."""
    if op == wire.OP_APPENDS:
        return on_appends(replicator, message)
    return on_peer(replicator, op, message)


def on_peer(replicator: Replicator, op: str, message: dict[str, Any]) -> dict[str, Any]:
    """Apply a claim, append or install from another shard; the answer for its link."""
    channel = str(message["ch"])
    term = int(message["term"])
    sender = str(message["from"])
    rep = replicator.replica(channel)
    was_leader = rep.is_leader
    if op == wire.OP_CLAIM:
        amnesiac = replicator.amnesiac(rep)
        answer = rep.on_claim(term, sender)
        if amnesiac and answer.get("granted"):
            answer["amnesiac"] = True
    elif op == wire.OP_APPEND:
        before = rep.stream.top if rep.stream is not None else 0
        answer = rep.on_append(
            term,
            sender,
            int(message["prev"]),
            list(message.get("pubs") or []),
            int(message.get("commit", 0)),
        )
        if answer.get("ok"):
            replicator.unsure.discard(channel)
            replicator.persistence.appended(rep, before)
    else:
        answer = rep.on_install(term, sender, dict(message["state"]))
        if answer.get("ok"):
            replicator.unsure.discard(channel)
            replicator.persistence.installed(rep)
    if was_leader and not rep.is_leader:
        replicator.after_step_down(channel, sender)
    return answer


def on_appends(replicator: Replicator, message: dict[str, Any]) -> dict[str, Any]:
    """Appends to many channels from one leader, each applied in order; one answer each."""
    items = message.get("items")
    if not isinstance(items, list):
        raise ValueError("items must be a list")
    results: list[dict[str, Any]] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise TypeError("an append must be an object")
            results.append(on_peer(replicator, wire.OP_APPEND, item))
        except ReplyError as exc:
            results.append({"error": {"code": int(exc.code), "message": exc.message}})
        except (KeyError, TypeError, ValueError) as exc:
            error = {"code": int(ErrorCode.BAD_REQUEST), "message": f"malformed append: {exc}"}
            results.append({"error": error})
    return {"results": results}
