"""Who is in each channel, as the edges report it to the channel's leader. Pure code.

Presence is ephemeral: it is not replicated. After a takeover the edges report their clients
again to the new leader (they do so whenever a channel moves).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class Presence:
    __slots__ = ("_channels",)

    def __init__(self) -> None:
        # channel -> client id -> (edge that reported it, ClientInfo, announce its leave)
        self._channels: dict[str, dict[str, tuple[Hashable, dict[str, Any], bool]]] = {}

    def add(self, channel: str, edge: Hashable, info: dict[str, Any], announce: bool) -> bool:
        """Record a client; True if it is new and ``announce`` (a join to announce)."""
        clients = self._channels.setdefault(channel, {})
        client_id = str(info["client"])
        new = client_id not in clients
        clients[client_id] = (edge, info, announce)
        return new and announce

    def remove(self, channel: str, client_id: str) -> dict[str, Any] | None:
        """Forget a client; its info if it was there and announced (a leave to announce)."""
        clients = self._channels.get(channel)
        if not clients or client_id not in clients:
            return None
        _, info, announce = clients.pop(client_id)
        if not clients:
            del self._channels[channel]
        return info if announce else None

    def drop_edge(self, edge: Hashable) -> list[tuple[str, dict[str, Any]]]:
        """An edge went away: its clients leave. Returns (channel, info) of each to announce."""
        gone = []
        for channel, clients in list(self._channels.items()):
            for client_id, (owner, info, announce) in list(clients.items()):
                if owner == edge:
                    del clients[client_id]
                    if announce:
                        gone.append((channel, info))
            if not clients:
                del self._channels[channel]
        return gone

    def clients(self, channel: str) -> dict[str, dict[str, Any]]:
        return {cid: info for cid, (_, info, _) in self._channels.get(channel, {}).items()}

    def stats(self, channel: str) -> dict[str, int]:
        clients = self._channels.get(channel, {})
        users = {info.get("user", "") for _, info, _ in clients.values()}
        return {"num_clients": len(clients), "num_users": len(users)}
