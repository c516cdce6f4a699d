"""The entries edges write to the origin's event log (link op ``events``), shared by the edge
that writes them and the origin that folds them.

Each entry: ``type`` (one of ``EDGE_KINDS``), ``id`` (unique: the edge process's name and a
sequence number), ``node`` (the edge process), ``client``, ``user``, ``time`` (ms); a connect
adds ``transport`` and ``channels`` (its server-side subscriptions), a subscribe and an
unsubscribe add ``channel``, an unsubscribe and a disconnect add ``code`` and ``reason``.
"""

from __future__ import annotations

CONNECT = "connect"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
DISCONNECT = "disconnect"
EDGE_KINDS = frozenset({CONNECT, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT})

# A connection that closed without a disconnect code (its transport went away).
CLOSED_CODE = 3000
CLOSED_REASON = "connection closed"
# A client's own unsubscribe.
UNSUBSCRIBED_CODE = 0
UNSUBSCRIBED_REASON = "unsubscribed"
