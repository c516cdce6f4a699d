"""Calls to the app's backend through its proxies: HTTP, a timeout, the client headers the
proxy may see, a bounded reply, and a breaker per proxy (``edge.breaker``). What the replies
mean is ``edge.proxy_replies``.

However the backend fails (too slow, down, a 5xx, a body that is not the protocol, the
breaker open), the client gets a temporary internal error (100), which the SDKs retry with
backoff, and never waits past the proxy's ``timeout``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from skyrelay.config import ProxyConfig
from skyrelay.edge.breaker import Breaker
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.proxy_replies import BadReply, outcome, status_answer
from skyrelay.protocol.codes import Disconnect, ErrorCode, ReplyError

log = logging.getLogger("skyrelay.edge.backend")

# The proxy of the legacy ``edge.rpc_url`` setting.
RPC_URL_PROXY = "rpc_url"


def unavailable() -> ReplyError:
    return ReplyError(ErrorCode.INTERNAL, "backend unavailable", temporary=True)


class Backend:
    """The edge's proxies to the app's backend, by name."""

    def __init__(self, proxies: Mapping[str, ProxyConfig], metrics: EdgeMetrics) -> None:
        self.proxies = dict(proxies)
        self.metrics = metrics
        self.breakers = {
            name: Breaker(p.breaker_failures, p.breaker_seconds) for name, p in proxies.items()
        }
        self.http: aiohttp.ClientSession | None = None
        # Client request headers some proxy passes on (lower case): only these are kept.
        self.header_names = frozenset(
            h.lower() for p in self.proxies.values() for h in p.http_headers
        )

    def add(self, name: str, proxy: ProxyConfig) -> None:
        self.proxies[name] = proxy
        self.breakers[name] = Breaker(proxy.breaker_failures, proxy.breaker_seconds)

    def kept_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """What of a client's request headers a proxy may need (keys in lower case)."""
        if not self.header_names:
            return {}
        return {k.lower(): v for k, v in headers.items() if k.lower() in self.header_names}

    async def call(
        self,
        name: str,
        kind: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        user: str | None = None,
        meta: Any = None,
    ) -> dict[str, Any] | None:
        """The backend's ``result`` (None: it gave none); raises the ReplyError or Disconnect
        it answered, or a temporary ReplyError when it could not answer. ``meta``: the
        connection's meta, sent where the proxy includes it."""
        proxy = self.proxies[name]
        if meta is not None and proxy.include_connection_meta:
            body = {**body, "meta": meta}
        breaker = self.breakers[name]
        counted = self.metrics.proxy_requests
        if self.http is None or not breaker.allow(time.monotonic()):
            counted.labels(name, kind, "refused").inc()
            raise unavailable()
        sent = {"content-type": "application/json"}
        for header in proxy.http_headers:
            value = headers.get(header.lower())
            if value is not None:
                sent[header] = value
        started = time.monotonic()
        try:
            raw = await self._post(proxy, orjson.dumps(body), sent)
            result = outcome(raw, user)
        except (aiohttp.ClientError, TimeoutError, OSError, BadReply) as exc:
            breaker.failed(time.monotonic())
            counted.labels(name, kind, "failed").inc()
            log.warning(
                "backend call failed",
                extra={"proxy": name, "kind": kind, "problem": str(exc) or type(exc).__name__},
            )
            raise unavailable() from None
        except ReplyError:
            breaker.succeeded()
            counted.labels(name, kind, "error").inc()
            raise
        except Disconnect:
            breaker.succeeded()
            counted.labels(name, kind, "disconnect").inc()
            raise
        finally:
            self.metrics.proxy_seconds.labels(name).observe(time.monotonic() - started)
        breaker.succeeded()
        counted.labels(name, kind, "ok").inc()
        return result

    async def _post(self, proxy: ProxyConfig, data: bytes, headers: dict[str, str]) -> bytes:
        assert self.http is not None
        timeout = aiohttp.ClientTimeout(total=proxy.timeout)
        async with self.http.post(proxy.endpoint, data=data, headers=headers, timeout=timeout) as r:
            if r.status != 200:
                answer = status_answer(proxy.status_to_code_transforms, r.status)
                raise answer or BadReply(f"HTTP status {r.status}")
            chunks = []
            size = 0
            async for chunk in r.content.iter_any():
                size += len(chunk)
                if size > proxy.max_reply_bytes:
                    raise BadReply(f"the reply is over {proxy.max_reply_bytes} bytes")
                chunks.append(chunk)
        return b"".join(chunks)
