"""Every timer and limit of the client, with its default and the reason for it."""

from __future__ import annotations

from dataclasses import dataclass

# Transports the client walks through, best first.
TRANSPORT_ORDER = ("websocket", "http_stream", "longpoll")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    # Reconnect delays: capped exponential backoff with full jitter. The n-th attempt in a row
    # waits a random time in [0, min(backoff_max, backoff_min * 2**n)], so clients cut off
    # together (an edge restart) come back spread out instead of all at once.
    backoff_min: float = 0.5
    backoff_max: float = 20.0
    # A connection that stayed up this long resets the backoff to its first step.
    backoff_reset_after: float = 10.0
    # Seconds to open a transport and get the connect reply. A transport that opens but says
    # nothing in time (a proxy buffering the stream) counts as refused: the next one is tried.
    connect_timeout: float = 5.0
    # Seconds a command (subscribe, publish) may wait for its reply before the connection is
    # taken for dead and replaced.
    command_timeout: float = 10.0
    # Extra seconds past the advertised ping interval before a silent connection is dead.
    ping_grace: float = 10.0
    # Seconds a GET /health probe of an edge may take.
    probe_timeout: float = 2.0
    # Seconds between round-trip probes of every edge while connected.
    reprobe_interval: float = 300.0
    # Move a healthy connection to another edge only when that edge answers probes faster by
    # at least this many seconds (0 = never move a healthy connection).
    switch_gain: float = 0.05
    # Seconds an edge that failed or drained (3001) is tried only after the others.
    edge_cooldown: float = 30.0
    # Seconds a remembered transport is trusted; past it the client starts from WebSocket again.
    transport_memory: float = 86400.0
    # Seconds a long-poll request asks the edge to hold it (the edge caps it too).
    longpoll_timeout: float = 25.0
    # Publications in one long-poll answer per channel.
    longpoll_limit: int = 100
    # Seconds between writes of consumed stream positions to the state file. A crash loses at
    # most this much position progress: those publications come again (at least once).
    state_flush_interval: float = 0.5
    # Publications waiting in one subscription's queue for the app before it is told it is
    # too slow (the oldest are not dropped: the queue only reports).
    queue_warning: int = 10000
    # Name sent in connect, shown in the server's logs.
    name: str = "skyrelay-python"
