"""The processes of a cluster as its config lists them: each shard (``[[shards]]``) and each
edge (``[[edges]]``), with where it is reached and how it serves TLS."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ShardConfig:
    id: str
    url: str
    weight: int = 1
    # Failure domain (an availability zone, a rack): a channel's replica set takes shards of
    # distinct zones first, so its majority spans two zones. Empty: no zone.
    zone: str = ""
    # Address the shard listens on; empty: the host of its url. "0.0.0.0" where the url's
    # name is only resolvable once the shard runs (a Kubernetes pod's DNS name).
    listen_host: str = ""
    # PEM certificate chain and private key the shard serves TLS with; required when (and
    # only when) its url is https://. Read by that shard only: other hosts need not have them.
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    id: str
    host: str = "127.0.0.1"
    port: int = 8000
    # PEM certificate chain and private key: when set, the edge serves its clients and the
    # server API over TLS (wss://, https://) on ``port``.
    tls_cert: str = ""
    tls_key: str = ""
