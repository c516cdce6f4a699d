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
