"""The event log, read in order: which connections are open, what each is subscribed to, and
the events the app's backend is told. Pure code.

Edges write what they saw (connect, subscribe, unsubscribe, disconnect) to the log; the log's
leader writes ``node_gone`` when an edge process went silent, and checkpoints. Folding the
log in offset order gives the events to post: the edges' own, plus the ones that follow from
the cluster-wide state: ``occupied`` for a channel's first subscriber, ``vacated`` when its
last one leaves, the unsubscribes a disconnect implies, and every disconnect a gone process
owes. The fold is a function of the log alone, so a new leader that resumes from a
checkpoint posts the same events, with the same ids, as the old one would have.

What belongs here: the entries' shapes and the fold. What never does: the log's storage,
timers, HTTP, or knowing which shard leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skyrelay.link.event_entries import (
    CLOSED_CODE,
    CLOSED_REASON,
    CONNECT,
    DISCONNECT,
    EDGE_KINDS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED_CODE,
    UNSUBSCRIBED_REASON,
)

# Entries the log's leader writes.
NODE_GONE = "node_gone"
CHECKPOINT = "checkpoint"
# Events that only the fold makes.
OCCUPIED = "occupied"
VACATED = "vacated"

# What the disconnects and unsubscribes the fold makes for a gone edge process (killed, cut
# off) say.
GONE_CODE = 3000
GONE_REASON = "edge gone"
# How long a gone process is remembered (its late entries are ignored), in milliseconds.
GONE_MEMORY_MS = 86_400_000


@dataclass(slots=True)
class OpenConnection:
    user: str
    node: str
    # Subscribed channels, in the order subscribed (a dict, for order and lookup).
    channels: dict[str, None] = field(default_factory=dict)


class EventFold:
    """The state after the entries folded so far."""

    __slots__ = ("connections", "gone", "nodes", "skipped", "subscribers")

    def __init__(self) -> None:
        self.connections: dict[str, OpenConnection] = {}
        # channel -> open connections subscribed to it, cluster-wide
        self.subscribers: dict[str, int] = {}
        # edge process -> its open connections
        self.nodes: dict[str, dict[str, None]] = {}
        # edge processes reported gone -> when (ms)
        self.gone: dict[str, int] = {}
        # Entries ignored: malformed, or not matching the state (a subscribe of a connection
        # that is not open, an entry of a gone process).
        self.skipped = 0

    def apply(self, entry: Any, offset: int) -> list[dict[str, Any]]:
        """Fold the entry at ``offset``; the events to post for it, in order."""
        if not isinstance(entry, dict):
            self.skipped += 1
            return []
        kind = entry.get("type")
        try:
            if kind == CHECKPOINT:
                return []
            base = _base(entry, offset)
            if kind == NODE_GONE:
                return self._node_gone(base, _text(entry, "node"))
            if kind not in EDGE_KINDS:
                raise ValueError(kind)
            node, client = _text(entry, "node"), _text(entry, "client")
        except (KeyError, TypeError, ValueError):
            self.skipped += 1
            return []
        if node in self.gone:
            self.skipped += 1
            return []
        if kind == CONNECT:
            return self._connect(base, entry, node, client)
        conn = self.connections.get(client)
        if conn is None or conn.node != node:
            self.skipped += 1
            return []
        if kind == DISCONNECT:
            code, reason = _close(entry, CLOSED_CODE, CLOSED_REASON)
            return self._disconnect(base, client, conn, code, reason)
        channel = entry.get("channel")
        if not isinstance(channel, str) or not channel:
            self.skipped += 1
            return []
        if kind == SUBSCRIBE:
            return self._subscribe(base, client, conn, channel)
        code, reason = _close(entry, UNSUBSCRIBED_CODE, UNSUBSCRIBED_REASON)
        return self._unsubscribe(base, client, conn, channel, code, reason)

    def _connect(
        self, base: dict[str, Any], entry: dict[str, Any], node: str, client: str
    ) -> list[dict[str, Any]]:
        if client in self.connections:
            self.skipped += 1
            return []
        user = entry.get("user")
        conn = OpenConnection(user if isinstance(user, str) else "", node)
        self.connections[client] = conn
        self.nodes.setdefault(node, {})[client] = None
        event = {**base, "type": CONNECT, "client": client, "user": conn.user}
        transport = entry.get("transport")
        if isinstance(transport, str):
            event["transport"] = transport
        events = [event]
        channels = entry.get("channels")
        for index, channel in enumerate(channels if isinstance(channels, list) else []):
            if isinstance(channel, str) and channel and channel not in conn.channels:
                sub_base = {**base, "id": f"{base['id']}:s{index}"}
                events += self._subscribe(sub_base, client, conn, channel)
        return events

    def _subscribe(
        self, base: dict[str, Any], client: str, conn: OpenConnection, channel: str
    ) -> list[dict[str, Any]]:
        if channel in conn.channels:
            self.skipped += 1
            return []
        conn.channels[channel] = None
        count = self.subscribers.get(channel, 0) + 1
        self.subscribers[channel] = count
        events = []
        if count == 1:
            events.append(
                {**base, "id": f"{base['id']}:occupied", "type": OCCUPIED, "channel": channel}
            )
        events.append(
            {**base, "type": SUBSCRIBE, "client": client, "user": conn.user, "channel": channel}
        )
        return events

    def _unsubscribe(
        self,
        base: dict[str, Any],
        client: str,
        conn: OpenConnection,
        channel: str,
        code: int,
        reason: str,
    ) -> list[dict[str, Any]]:
        if channel not in conn.channels:
            self.skipped += 1
            return []
        del conn.channels[channel]
        event = {
            **base,
            "type": UNSUBSCRIBE,
            "client": client,
            "user": conn.user,
            "channel": channel,
            "code": code,
            "reason": reason,
        }
        count = self.subscribers.get(channel, 1) - 1
        if count > 0:
            self.subscribers[channel] = count
            return [event]
        self.subscribers.pop(channel, None)
        return [event, {**base, "id": f"{base['id']}:vacated", "type": VACATED, "channel": channel}]

    def _disconnect(
        self, base: dict[str, Any], client: str, conn: OpenConnection, code: int, reason: str
    ) -> list[dict[str, Any]]:
        """The connection's unsubscribes (with the disconnect's code), then the disconnect."""
        events = []
        for index, channel in enumerate(list(conn.channels)):
            sub_base = {**base, "id": f"{base['id']}:u{index}"}
            events += self._unsubscribe(sub_base, client, conn, channel, code, reason)
        del self.connections[client]
        held = self.nodes.get(conn.node)
        if held is not None:
            held.pop(client, None)
            if not held:
                del self.nodes[conn.node]
        events.append(
            {
                **base,
                "type": DISCONNECT,
                "client": client,
                "user": conn.user,
                "code": code,
                "reason": reason,
            }
        )
        return events

    def _node_gone(self, base: dict[str, Any], node: str) -> list[dict[str, Any]]:
        if node in self.gone:
            return []
        forget_before = base["time"] - GONE_MEMORY_MS
        self.gone = {n: at for n, at in self.gone.items() if at >= forget_before}
        self.gone[node] = base["time"]
        events = []
        for client in list(self.nodes.get(node, {})):
            conn_base = {**base, "id": f"{base['id']}:{client}"}
            conn = self.connections[client]
            events += self._disconnect(conn_base, client, conn, GONE_CODE, GONE_REASON)
        return events

    # Checkpoints.

    def snapshot(self) -> dict[str, Any]:
        return {
            "connections": [
                [client, conn.user, conn.node, list(conn.channels)]
                for client, conn in self.connections.items()
            ],
            "gone": dict(self.gone),
        }

    @classmethod
    def restore(cls, state: Any) -> EventFold:
        """The fold a checkpoint's ``state`` holds; ValueError if it is not one."""
        fold = cls()
        if not isinstance(state, dict):
            raise ValueError("checkpoint state must be an object")
        for row in state.get("connections", []):
            client, user, node, channels = row
            conn = OpenConnection(str(user), str(node), dict.fromkeys(map(str, channels)))
            fold.connections[str(client)] = conn
            fold.nodes.setdefault(conn.node, {})[str(client)] = None
            for channel in conn.channels:
                fold.subscribers[channel] = fold.subscribers.get(channel, 0) + 1
        gone = state.get("gone", {})
        if not isinstance(gone, dict):
            raise ValueError("checkpoint gone must be an object")
        fold.gone = {str(node): int(at) for node, at in gone.items()}
        return fold


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _base(entry: dict[str, Any], offset: int) -> dict[str, Any]:
    at = entry.get("time")
    if isinstance(at, bool) or not isinstance(at, int):
        raise ValueError("time must be an integer")
    return {"id": _text(entry, "id"), "offset": offset, "time": at}


def _close(entry: dict[str, Any], code: int, reason: str) -> tuple[int, str]:
    given_code, given_reason = entry.get("code"), entry.get("reason")
    if isinstance(given_code, int) and not isinstance(given_code, bool):
        code = given_code
    if isinstance(given_reason, str):
        reason = given_reason
    return code, reason


def posted(events: list[dict[str, Any]], types: tuple[str, ...]) -> list[dict[str, Any]]:
    """The events of ``types`` (all when empty), in order."""
    return [e for e in events if e["type"] in types] if types else events


def entry_nodes(entry: Any) -> tuple[str, str] | None:
    """(kind, node) of an edge entry or a ``node_gone``; None for anything else."""
    if not isinstance(entry, dict):
        return None
    kind, node = entry.get("type"), entry.get("node")
    if (kind in EDGE_KINDS or kind == NODE_GONE) and isinstance(node, str) and node:
        return str(kind), node
    return None
