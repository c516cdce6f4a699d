"""The edge link: the wire format between an edge process and an origin shard.

One WebSocket per (edge process, shard), carrying binary frames. A frame holds one or more
JSON messages separated by ``\\n`` so that either side can batch. Messages:

- request (edge -> origin): ``{"id": n, "op": <op>, ...}``
- response (origin -> edge): ``{"id": n, "result": {...}}`` or
  ``{"id": n, "error": {"code", "message", "temporary"?}}``
- push (origin -> edge): ``{"push": {"ch": channel, "epoch": e, "pub": Publication, "at"?}}``,
  where ``at`` is when the leader took the publish (seconds since the epoch)

A push ``{"push": {"ch", "moved": true, "leader"?}}`` tells an edge that the shard stopped
leading the channel (a takeover); the edge resubscribes where the channel is led now.

Ops: ``sub`` (ch, since?, limit) subscribes the link to a channel and returns its position
(with the publications after ``since`` when given); ``unsub`` (ch); ``pub`` (ch, data, info?,
tags?, ikey?, skip_history?); ``history`` (ch, limit, since?, reverse?); ``read`` (ch, offset,
limit) returns the publications after ``offset`` for recovery.

Between shards: ``claim`` (ch, term, from) asks for a term and the member's stream;
``append`` (ch, term, from, prev, pubs, commit) and ``install`` (ch, term, from, state)
replicate. A request for a channel this shard does not lead fails with code 5000 and
``leader``, the shard to ask instead.

Surveys (the server API's ``channels``, ``info`` and ``disconnect``) ask every edge:

- the edge serving the API call sends ``survey`` (kind, params) to one shard;
- that shard sends ``{"survey": {"sid": n, "kind", "params"}}`` to every link that declared
  ``?surveys=1`` when it connected (edge processes do; shards do not);
- each edge answers ``{"answer": {"sid": n, "result": {...}}}`` (or ``"error"``): for
  ``channels`` ``{"channels": {ch: clients}}``, for ``info`` ``{"node": {...}}``, for
  ``disconnect`` ``{"disconnected": n}``;
- the shard merges what came back within ``origin.survey_timeout`` and answers the request,
  naming in ``missing`` whoever did not answer. For ``info`` it also asks every other shard
  for its own entry (``node_info``, over the links between shards).

Both the edge and the origin import this module; neither imports the other.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.protocol.codes import ReplyError

LINK_PATH = "/link"
# The link's own error code, never sent to clients: this shard does not lead the channel;
# ``leader`` names the shard to ask instead.
NOT_LEADER = 5000


def not_leader(leader: str) -> ReplyError:
    return ReplyError(NOT_LEADER, "not the leader of this channel", True, leader=leader)


# The event log's leader reported this edge process gone (silent past ``events.edge_grace``)
# and its clients disconnected: the process drops its clients and speaks again as a new one.
NODE_GONE = 5001


OP_SUB = "sub"
OP_UNSUB = "unsub"
OP_PUB = "pub"
# Many publications in one request (an edge's publishes of one loop turn to one shard):
# {"items": [{"ch", "data", "ikey"?, "info"?, "tags"?}]} -> {"results": [{"result"} | {"error"}]}
OP_PUBS = "pubs"
OP_HISTORY = "history"
OP_READ = "read"
# Between shards (replication): claim a term, append publications, install a whole stream.
OP_CLAIM = "claim"
OP_APPEND = "append"
# Appends to many channels in one request (a leader's appends of one loop turn to one
# follower): {"items": [append params]} -> {"results": [append answer | {"error"}]}
OP_APPENDS = "appends"
OP_INSTALL = "install"
# Presence: edges report their clients in a channel; the leader answers who is there.
OP_PRESENCE_ADD = "presence_add"
OP_PRESENCE_REMOVE = "presence_remove"
OP_PRESENCE = "presence"
OP_PRESENCE_STATS = "presence_stats"
OP_HISTORY_REMOVE = "history_remove"
# Surveys: an edge asks one shard to ask every edge; shards ask each other for node info.
# Between shards, about leadership: which channels the asked shard leads with the asker as a
# member (readiness), and "take over this channel" (a stopping leader's handover).
OP_LED = "led"
OP_TAKE_OVER = "take_over"
OP_SURVEY = "survey"
OP_NODE_INFO = "node_info"
# Connection and channel events, to the leader of the event log (``EVENT_LOG_CHANNEL``):
# {"node": edge process, "items": [event]} -> {}, once they are in the log; no items = "this
# process is alive". Fails with NODE_GONE once the process was reported gone.
OP_EVENTS = "events"
SURVEY_CHANNELS = "channels"
SURVEY_INFO = "info"
SURVEY_DISCONNECT = "disconnect"
SURVEY_KINDS = frozenset({SURVEY_CHANNELS, SURVEY_INFO, SURVEY_DISCONNECT})
# Query parameter of the link URL by which a peer says it answers surveys.
SURVEY_QUERY = "surveys"
EDGE_OPS = frozenset({OP_SUB, OP_UNSUB, OP_PUB, OP_PUBS, OP_HISTORY, OP_READ, OP_EVENTS})
PEER_OPS = frozenset({OP_CLAIM, OP_APPEND, OP_APPENDS, OP_INSTALL})


def proof_message(proof: str) -> str:
    """The shard's first message on a link opened by a challenge: a text frame (every other
    frame is binary) with its proof (``skyrelay.link.auth``)."""
    return orjson.dumps({"proof": proof}).decode()


def proof_of(text: str) -> str:
    """The proof in a shard's first message; '' if it holds none."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ""
    proof = message.get("proof") if isinstance(message, dict) else None
    return proof if isinstance(proof, str) else ""


class LinkProtocolError(ValueError):
    """A frame that does not follow the edge-link format."""


def encode_message(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def join_frame(messages: list[bytes]) -> bytes:
    return b"\n".join(messages)


def decode_frame(frame: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in frame.split(b"\n"):
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise LinkProtocolError("malformed JSON in edge-link frame") from None
        if not isinstance(message, dict):
            raise LinkProtocolError("edge-link message must be an object")
        out.append(message)
    return out


def result(req_id: int, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": req_id, "result": body})


def error(
    req_id: int, code: int, message: str, temporary: bool = False, leader: str | None = None
) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if temporary:
        err["temporary"] = True
    if leader is not None:
        err["leader"] = leader
    return orjson.dumps({"id": req_id, "error": err})


def pub_push(
    channel: str, epoch: str, pub: dict[str, Any], received: float = 0.0, delta: bool = False
) -> bytes:
    """``received``: when the leader took the publish, so edges can measure delivery latency;
    ``delta``: published as a delta (a patch for the subscribers that asked for them)."""
    body: dict[str, Any] = {"ch": channel, "epoch": epoch, "pub": pub}
    if received:
        body["at"] = received
    if delta:
        body["delta"] = True
    return orjson.dumps({"push": body})


def join_push(channel: str, kind: str, info: dict[str, Any]) -> bytes:
    """``kind`` is "join" or "leave"."""
    return orjson.dumps({"push": {"ch": channel, kind: {"info": info}}})


def moved_push(channel: str, leader: str | None) -> bytes:
    """This shard stopped leading ``channel``; ``leader`` leads it now, when known."""
    body: dict[str, Any] = {"ch": channel, "moved": True}
    if leader is not None:
        body["leader"] = leader
    return orjson.dumps({"push": body})


def cleared_push(channel: str) -> bytes:
    """``channel``'s history was removed (its position kept): edges drop their cached copy."""
    return orjson.dumps({"push": {"ch": channel, "cleared": True}})


def survey(sid: int, kind: str, params: dict[str, Any]) -> bytes:
    """A shard asks an edge for its part of a survey."""
    return orjson.dumps({"survey": {"sid": sid, "kind": kind, "params": params}})


def survey_answer(sid: Any, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"answer": {"sid": sid, "result": body}})


def survey_failure(sid: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"answer": {"sid": sid, "error": {"code": code, "message": message}}})
