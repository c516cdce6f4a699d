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
