"""Settings of the app's backend as the edge calls it: named HTTP proxies, each with its
endpoint, its timeout, the client headers it gets and how it fails fast. Which proxy serves
what is said where it applies: ``edge.connect_proxy``, ``edge.refresh_proxy``,
``edge.rpc_proxy``, and a namespace's ``subscribe_proxy``, ``publish_proxy``,
``sub_refresh_proxy``.
"""

from __future__ import annotations

from dataclasses import dataclass

# The proxy kinds and the request each sends (Centrifugo's HTTP proxy shapes).
PROXY_KINDS = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")


@dataclass(frozen=True, slots=True)
class StatusTransform:
    """A backend's HTTP status turned into the client's error or disconnect (Centrifugo's
    ``status_to_code_transforms``): one of ``error_code`` or ``disconnect_code`` is set."""

    status_code: int
    error_code: int = 0
    error_message: str = ""
    error_temporary: bool = False
    disconnect_code: int = 0
    disconnect_reason: str = ""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """``[proxies.NAME]``: one backend endpoint."""

    # The URL each request is POSTed to (JSON in, JSON out).
    endpoint: str
    # Seconds a request may take; past it the client gets a temporary error (100).
    timeout: float = 1.0
    # Client request headers passed on (the WebSocket upgrade's, or the HTTP stream's), by
    # name, case-insensitive: say "Cookie" for cookie sessions. Nothing else is passed.
    http_headers: tuple[str, ...] = ()
    # Largest reply body read; a longer one is a bad reply (temporary error 100).
    max_reply_bytes: int = 65536
    # Failures in a row after which the edge stops calling for ``breaker_seconds`` and answers
    # at once with a temporary error, so that an outage is not a pile of waiting requests
    # and every client's retry does not land on a backend that is down.
    breaker_failures: int = 5
    breaker_seconds: float = 5.0
    # Send the connection's ``meta`` (what the connect proxy's result gave it; never shown to
    # the client) with each request, as Centrifugo's include_connection_meta.
    include_connection_meta: bool = False
    # HTTP statuses (other than 200) that are an answer, not a failure: each becomes the
    # client's error or disconnect, and does not count toward the breaker.
    status_to_code_transforms: tuple[StatusTransform, ...] = ()


# The environment variable that may hold the outbox's DSN (it holds a password).
PG_OUTBOX_DSN_ENV = "SKYRELAY_PG_OUTBOX_DSN"


@dataclass(frozen=True, slots=True)
class PgOutboxConfig:
    """``[pg_outbox]``: publish what the app's own PostgreSQL transactions put in a table.

    The table is Centrifugo's outbox table (``id bigserial``, ``method text``, ``payload
    jsonb``, ``partition bigint``, ``created_at``): each row is a server API call, ``publish``
    or ``broadcast``, with its params as payload.
    """

    # libpq connection string or URL; empty = no outbox (``SKYRELAY_PG_OUTBOX_DSN`` wins).
    dsn: str = ""
    table: str = "skyrelay_outbox"
    # Rows are consumed in id order per partition, one consumer per partition across every
    # edge process (a PostgreSQL advisory lock each); partitions are 0 .. partitions - 1.
    partitions: int = 1
    # Rows read, published and removed per transaction.
    batch_size: int = 100
    # Seconds between looks at the table when no notification comes (LISTEN on the table's
    # name wakes the consumer at once where the app sends NOTIFY).
    poll_interval: float = 0.5
    # Seconds before connecting again after PostgreSQL went away (doubled up to 10x).
    reconnect_delay: float = 0.5


# The events the backend may be posted (``[events] types``).
EVENT_TYPES = ("connect", "disconnect", "subscribe", "unsubscribe", "occupied", "vacated")


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """``[events]``: what happens to connections and channels (connect, disconnect, subscribe,
    unsubscribe, occupied, vacated), posted to the app's backend in batches until it acks.

    Edges write each event to a replicated log in the origin cluster before the client hears
    its answer; the shard leading the log posts them, in log order, and retries until a 2xx.
    """

    # The URL batches are POSTed to; empty = no events.
    endpoint: str = ""
    # Request headers sent with every batch, each "Name: value" (an Authorization header,
    # say: the backend should check who posts to it).
    headers: tuple[str, ...] = ()
    # Seconds a POST may take before it counts as failed (and is sent again).
    timeout: float = 5.0
    # The types posted (of EVENT_TYPES); empty: all. The others still count (a connection's
    # subscribes make its channels occupied) but are not sent.
    types: tuple[str, ...] = ()
    # Events per POST at most.
    batch_size: int = 100
    # Events the log keeps for a backend that does not ack; past it the oldest undelivered
    # ones are dropped, logged and counted (skyrelay_origin_events_lost_total).
    backlog: int = 100000
    # Seconds an undelivered event is kept; older ones are dropped the same way.
    retention: float = 86400.0
    # Seconds an edge process may be silent (killed, cut off) before its clients are reported
    # unsubscribed and disconnected. An edge that comes back after it drops its clients, which
    # reconnect as new connections.
    edge_grace: float = 15.0
    # Least seconds between the dispatcher's checkpoints: a new leader of the log (a failover)
    # sends again what was acked since the last one.
    checkpoint_interval: float = 2.0
    # Seconds before the first retry of a failed POST, doubled each time up to the maximum.
    retry_delay: float = 0.5
    max_retry_delay: float = 10.0
    # Events an edge process holds before they are in the log. While it is full (the log's
    # shards unreachable) connects and subscribes get a temporary error; the disconnects and
    # unsubscribes that close earlier events always wait in it.
    edge_queue: int = 10000

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    def header_pairs(self) -> dict[str, str]:
        pairs = {}
        for line in self.headers:
            name, _, value = line.partition(":")
            pairs[name.strip()] = value.strip()
        return pairs
