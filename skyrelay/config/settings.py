"""The settings of a cluster, as the TOML file gives them: every limit the servers enforce is a
named field here, with its default and the reason for it. ``skyrelay.config.parse`` validates a
file into these; nothing here reads files or the environment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from skyrelay.config.backend import EventsConfig, PgOutboxConfig, ProxyConfig
from skyrelay.config.members import EdgeConfig, ShardConfig
from skyrelay.ring.health import HealthSettings

TOKEN_SECRET_ENV = "SKYRELAY_TOKEN_SECRET"
# Every client transport an edge can serve, in the order clients usually fall back through them.
TRANSPORTS = ("websocket", "http_stream", "sse", "uni_sse", "longpoll")
# Delta compressions of publications a namespace may allow.
DELTA_TYPES = ("fossil",)
API_KEY_ENV = "SKYRELAY_API_KEY"
# Secrets every process proves itself with on the links to the shards, where TLS is off
# (comma-separated: the first signs, any is accepted, for rotation).
LINK_SECRET_ENV = "SKYRELAY_LINK_SECRET"
# The origin's internal log of connection and channel events: its namespace has a dot, which
# no configured namespace may have, so no client or server API call can name it.
EVENT_LOG_CHANNEL = "skyrelay.internal:events"

Permission = Literal["anonymous", "client", "subscriber", "none"]
Durability = Literal["memory", "disk", "fsync"]
# Largest shard weight: the ring holds 160 points per unit of weight, built at start-up.
MAX_SHARD_WEIGHT = 100


@functools.lru_cache(maxsize=64)
def compiled_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Options of the channels ``name:...`` (``default`` holds channels without a prefix)."""

    # Publications kept per channel for recovery and the history command; 0 disables history.
    history_size: int = 100
    # Seconds a publication stays in history; also how long a stream position survives idle.
    history_ttl: float = 300.0
    # Recover every subscription, whether or not the client asked for `recoverable`.
    force_recovery: bool = False
    # Position every subscription (epoch and offset in the reply, gaps detected), whether or
    # not the client asked for `positioned`.
    force_positioning: bool = False
    # Who may do what: anonymous (any connection), client (a connection with a user),
    # subscriber (a connection subscribed to the channel), or none. For subscribing this
    # applies to subscribes without a token: a valid subscription token always grants it.
    allow_subscribe: Permission = "anonymous"
    allow_publish: Permission = "subscriber"
    allow_history: Permission = "subscriber"
    allow_presence: Permission = "subscriber"
    # Keep who is subscribed (presence, presence_stats), across edges.
    presence: bool = False
    # Push join and leave events to subscribers that ask for them (needs presence).
    join_leave: bool = False
    # Push join and leave events to every subscriber, asked for or not (needs join_leave).
    force_push_join_leave: bool = False
    # Every subscribe needs a valid subscription token, as on `$` channels.
    require_subscription_token: bool = False
    # Channels ending in `#user1,user2` may be subscribed by the users listed, and only them.
    allow_user_limited_channels: bool = False
    # Connections with a user are subscribed at connect to their personal channel of this
    # namespace, `#<user>` (`<namespace>:#<user>`), server-side.
    personal_channel: bool = False
    # Channel names (after the "name:" prefix) must match this regular expression, when set.
    channel_regex: str = ""
    # Delta compressions a subscriber may ask for (only "fossil" exists): its publications
    # marked delta then come as patches against the channel's previous publication.
    allowed_delta_types: tuple[str, ...] = ()
    # Mark every publication of these channels delta (the server API's `delta` marks one).
    delta_publish: bool = False
    # The app's backend decides here (names of ``[proxies.NAME]``; "" = no proxy): whether a
    # subscribe without a subscription token is allowed (and with what info and data), what
    # a client publishes (allow, refuse, rewrite), and whether a subscription whose
    # ``expire_at`` came stays.
    subscribe_proxy: str = ""
    publish_proxy: str = ""
    sub_refresh_proxy: str = ""

    def name_allowed(self, channel: str) -> bool:
        if not self.channel_regex:
            return True
        _, sep, rest = channel.partition(":")
        return compiled_regex(self.channel_regex).fullmatch(rest if sep else channel) is not None


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Client-facing limits and timers of every edge."""

    # Client transports this edge serves (a subset of TRANSPORTS); the others answer 404, so
    # clients fall back to one that is served. For networks or load balancers that break one.
    transports: tuple[str, ...] = TRANSPORTS
    # Origins allowed to open WebSocket connections (fnmatch patterns); requests without an
    # Origin header (native apps, servers) are always allowed.
    allowed_origins: tuple[str, ...] = ()
    # Server ping `{}` interval, in seconds, advertised in the connect reply.
    ping_interval: int = 25
    # A client that has not answered a ping within this many seconds is closed with 3012.
    pong_timeout: int = 8
    # Seconds past its token's expiry an unrefreshed connection (3005) or private
    # subscription (unsubscribe 2501) is given before it is closed.
    expired_close_delay: float = 25.0
    # A connection that sends no `connect` within this many seconds is closed with 3502.
    connect_timeout: float = 10.0
    # Largest incoming WebSocket message; past it the connection is closed with 1009.
    max_message_size: int = 65536
    # Subscriptions one connection may hold (error 106 past it).
    max_subscriptions_per_connection: int = 128
    # Bytes queued for one client (ours plus the kernel-side transport buffer) before it is
    # disconnected as slow (3008). The client then recovers from history.
    client_outbound_limit: int = 1 << 20
    # Kernel send buffer of each client socket (SO_SNDBUF); 0 lets the kernel autotune it,
    # which on Linux can hold megabytes for a client that stopped reading.
    client_send_buffer: int = 0
    # Publications a recovery may return; past it the client gets `recovered: false`.
    recovery_max_publications: int = 300
    # Publications one history call may return.
    history_max_publications: int = 300
    # permessage-deflate where the client asks for it. On the edge's own path every message is
    # compressed once per process and shared by every subscriber (no compressor per
    # connection); a connection keeps only the decompressor of what its client sends.
    websocket_compression: bool = False
    # zlib level of that compression: 1 is fastest, 9 smallest.
    websocket_compression_level: int = 1
    # Messages shorter than this many bytes go uncompressed (they would barely shrink).
    websocket_compression_min_size: int = 128
    # Window of the client's compression (client_max_window_bits, 9-15), where the client
    # lets the edge choose: the decompressor each connection keeps holds 2**bits bytes.
    websocket_compression_window_bits: int = 10
    # Pending TCP connections the kernel queues for accept(); 128 is too small for bursts.
    listen_backlog: int = 4096
    # Seconds an upstream request (subscribe, publish, history) may take before it fails
    # with a temporary error.
    upstream_timeout: float = 5.0
    # Seconds between reconnect attempts of an edge link to a shard (doubles up to 10x).
    link_reconnect_delay: float = 0.2
    # Bytes of one edge-link frame; large enough for a full history page.
    link_max_frame: int = 64 << 20
    # Largest server API request body.
    api_max_body: int = 1 << 20
    # Seconds a connection has to send a complete request head, counted from when it opens
    # or from its previous response (so also how long an idle keep-alive connection is kept):
    # slowloris clients and connections that never send anything are closed.
    http_header_timeout: float = 65.0
    # Seconds a client has to send a whole request body (server API, long-poll, emulation,
    # stream openings); past it the request gets 408.
    http_body_timeout: float = 30.0
    # Seconds a channel nobody subscribes to any more stays subscribed upstream, with its hot
    # cache, so that reconnecting clients and long-polls find it warm.
    channel_linger: float = 30.0
    # Recent publications each channel keeps at the edge for recovery without the origin.
    hot_cache_size: int = 100
    # Longest a long-poll request is held waiting for publications, in seconds.
    longpoll_timeout: float = 25.0
    # Connections one user (token ``sub``) may hold on one edge process; 0 = no limit.
    # Past it a connect is refused with disconnect 3504.
    max_connections_per_user: int = 100
    # Connections one edge process holds at most; 0 = no limit. Past it a connect is refused
    # with disconnect 3013, which clients retry with backoff (a load balancer then spreads
    # them to other edges). Alert before it: see the connection-limit alert.
    max_connections: int = 50000
    # Seconds between updates of the live status page (/status).
    status_interval: float = 1.0
    # Seconds the status page waits for each origin's summary before showing it unreachable.
    status_origin_timeout: float = 0.5
    # Seconds a status page login (a cookie signed with the API key) stays valid.
    status_session_ttl: float = 43200.0
    # Backend that answers the client ``rpc`` command (POST, JSON); empty = rpc not available.
    # ``rpc_proxy`` (a named proxy) takes precedence.
    rpc_url: str = ""
    # Proxies (names of ``[proxies.NAME]``; "" = none): ``connect_proxy`` authenticates a
    # connect without a token (from its cookies and headers), ``refresh_proxy`` extends a
    # connection when its ``expire_at`` comes (server-side, the client does nothing),
    # ``rpc_proxy`` answers ``rpc``.
    connect_proxy: str = ""
    refresh_proxy: str = ""
    rpc_proxy: str = ""
    # Seconds the backend has to answer an RPC.
    rpc_timeout: float = 5.0
    # Publications per second one connection may send (bursts up to the same number);
    # past it publish fails with 111 (too many requests). 0 = no limit.
    client_publish_rate: float = 100.0
    # Connections without a token are accepted, as anonymous (user ""), with what the
    # namespaces allow anonymous connections. A token, when sent, is still verified.
    allow_anonymous_connect_without_token: bool = False
    # Development only: connections without a token are accepted, and every connection may
    # subscribe (private channels included), publish, and read history and presence
    # everywhere. Logged as a warning at start-up. Never in production.
    insecure: bool = False
    # Worker processes per edge, all on the edge's port (SO_REUSEPORT); `--workers` overrides.
    workers: int = 1
    # First delay before a worker that died is started again; doubles after each death up to
    # worker_restart_max_delay, and starts over once a worker has run that long.
    worker_restart_delay: float = 0.5
    worker_restart_max_delay: float = 30.0
    # Seconds workers get to drain after SIGTERM before the supervisor kills them.
    worker_stop_timeout: float = 8.0
    # Seconds one worker waits for another (a forwarded emulation request, a metrics scrape).
    worker_call_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    # "console" (readable lines) or "json" (one object per line, for log pipelines).
    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How client tokens are verified (the HMAC secret is ``token_secret``)."""

    # Algorithms accepted; empty = HS256/384/512 with the secret, plus those of each
    # configured public key (RS*, ES*, EdDSA; all of them with a JWKS URL). Never "none".
    algorithms: tuple[str, ...] = ()
    rsa_public_key: str = ""
    ecdsa_public_key: str = ""
    ed25519_public_key: str = ""
    # Keys by ``kid`` from a JSON Web Key Set, cached and refetched on an unknown kid.
    jwks_url: str = ""
    jwks_ttl: float = 300.0
    # Required ``aud`` and ``iss`` claims, when set.
    audience: str = ""
    issuer: str = ""


@dataclass(frozen=True, slots=True)
class OriginSettings:
    listen_backlog: int = 4096
    # As edge.http_header_timeout, for the origin's port (edge links, health, metrics).
    http_header_timeout: float = 65.0
    link_max_frame: int = 64 << 20
    # How long an idempotency key is remembered, in seconds.
    idempotency_window: float = 300.0
    # Keys remembered per channel at most (oldest forgotten first).
    idempotency_max_keys: int = 10000
    # Bytes buffered for one edge link before the origin drops it as too slow.
    link_write_limit: int = 8 << 20
    # Seconds a publish waits for min_copies shards to hold it; then it fails as temporary.
    replication_timeout: float = 2.0
    # Seconds a shard waits for the other members' answers when it claims a channel.
    claim_timeout: float = 1.0
    # Seconds a shard waits for every edge's (and shard's) part of a survey (the server API's
    # channels, info, disconnect) before it answers with what it has. The edge that asked
    # gives the shard twice this long, then tries the next one.
    survey_timeout: float = 1.0
    # Where a shard keeps its channel copies; `{shard}` is replaced by the shard id, so one
    # config serves every shard of a host. Empty: nothing on disk.
    data_dir: str = ""
    # What an ack promises about each of the min_copies shards that hold a publication:
    # "memory" (held in memory: lost if they all restart), "disk" (written to the OS before the
    # ack: survives a process crash), "fsync" (on stable storage before the ack, writes of a
    # moment synced together: survives power loss). Default: disk when data_dir is set,
    # memory otherwise.
    durability: Durability = "memory"
    # The cluster's name, written into every data_dir: a directory another cluster wrote is
    # refused at start. Give each cluster its own.
    cluster_id: str = "skyrelay"
    # Seconds a stopping shard (SIGTERM) spends handing its leaderships to caught-up
    # replicas before it exits; what is left fails over as after a crash. A supervisor's
    # grace period must cover it.
    handover_timeout: float = 10.0
    # Bytes per storage segment file. Compaction rewrites the live copies of the oldest
    # segment once the log holds more than a few (origin/storage/store.py, SEGMENTS_KEPT).
    storage_segment_bytes: int = 64 << 20


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How edges and shards connect to https:// shard URLs."""

    # PEM CA bundle the shards' certificates are verified against; empty = the system's
    # trust store.
    ca: str = ""
    # Refuse http:// shard URLs, so no link or health check between processes is plaintext.
    require: bool = False


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    shards: tuple[ShardConfig, ...]
    edges: tuple[EdgeConfig, ...] = ()
    replication: int = 3
    # Shards that must hold a publication before it is acked; 0 means a majority.
    min_copies: int = 0
    # Seconds between looks at the config file for changes, applied as a SIGHUP would (a
    # Kubernetes ConfigMap changes the mounted file in place); 0: only on SIGHUP.
    config_watch_interval: float = 0.0
    namespaces: Mapping[str, NamespaceConfig] = field(
        default_factory=lambda: {"default": NamespaceConfig()}
    )
    edge: EdgeSettings = EdgeSettings()
    origin: OriginSettings = OriginSettings()
    health: HealthSettings = field(default_factory=HealthSettings)
    auth: AuthSettings = AuthSettings()
    log: LogSettings = LogSettings()
    tls: TlsSettings = TlsSettings()
    # The app's backend endpoints by name (``[proxies.NAME]``).
    proxies: Mapping[str, ProxyConfig] = field(default_factory=dict)
    # Publishing rows of the app's PostgreSQL outbox table (``[pg_outbox]``).
    pg_outbox: PgOutboxConfig = field(default_factory=PgOutboxConfig)
    # Connection and channel events posted to the app's backend (``[events]``).
    events: EventsConfig = field(default_factory=EventsConfig)
    token_secret: str = ""
    api_key: str = ""
    # Link secrets (``link_secret``, comma-separated; ``SKYRELAY_LINK_SECRET`` wins): where
    # the shards listen without TLS, a process must answer a challenge with the first of them
    # before its link opens; any of them is accepted. Empty: links are not authenticated
    # (where TLS is on, client certificates are, whatever this says).
    link_secrets: tuple[str, ...] = ()

    def namespace(self, channel: str) -> NamespaceConfig | None:
        """The namespace of ``channel``, or None when its prefix names no namespace."""
        name, sep, _ = channel.partition(":")
        if not sep:
            return self.namespaces.get("default")
        return self.namespaces.get(name)

    def stream_namespace(self, channel: str) -> NamespaceConfig | None:
        """What an origin keeps of ``channel``: its namespace's, or for the internal event
        log (a channel no client or API call can name), the ``[events]`` bounds."""
        if channel == EVENT_LOG_CHANNEL:
            return NamespaceConfig(
                history_size=self.events.backlog, history_ttl=self.events.retention
            )
        return self.namespace(channel)

    def shard(self, shard_id: str) -> ShardConfig:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise ConfigError(f"shards: no shard with id {shard_id!r}")

    def edge_by_id(self, edge_id: str | None) -> EdgeConfig:
        if not self.edges:
            raise ConfigError("edges: at least one [[edges]] entry is needed to run an edge")
        if edge_id is None:
            return self.edges[0]
        for edge in self.edges:
            if edge.id == edge_id:
                return edge
        raise ConfigError(f"edges: no edge with id {edge_id!r}")

    @property
    def effective_min_copies(self) -> int:
        size = min(self.replication, len(self.shards))
        return min(self.min_copies or size // 2 + 1, size)
