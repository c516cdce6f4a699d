"""Server-side subscriptions: channels the server subscribes a connection to as it connects.

The connection token names them (``channels``, and ``subs`` with options), and namespaces with
``personal_channel`` add the user's ``#<user>`` channel. The connect reply lists each one's
subscribe result in ``subs``. A client cannot resubscribe them: it reconnects and recovers them
through its connect command's ``subs`` positions. Bidirectional transports and uni_sse share
this plan; ``edge.client`` joins it. Pure: no I/O, no clients.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from skyrelay.config import ClusterConfig
from skyrelay.edge.auth import Credentials, ServerSub
from skyrelay.edge.session import (
    SubscribeOptions,
    personal_channel,
    stream_options,
    stream_position,
)
from skyrelay.protocol.codes import ReplyError

log = logging.getLogger("skyrelay.edge.serversubs")

# channel -> (epoch, offset) to recover from.
Positions = dict[str, tuple[str, int]]


def planned(config: ClusterConfig, credentials: Credentials) -> list[ServerSub]:
    """The token's server-side subscriptions, then the user's personal channels."""
    subs = list(credentials.subs)
    if credentials.user:
        named = {sub.channel for sub in subs}
        for name, ns in config.namespaces.items():
            channel = personal_channel(name, credentials.user)
            if ns.personal_channel and channel not in named:
                subs.append(ServerSub(channel))
    return subs


def positions_from_subs(subs: Any) -> Positions:
    """Recovery positions of a connect request's ``subs`` (``{channel: {recover, offset,
    epoch}}``); entries without ``recover: true`` are left out. ValueError names a bad field."""
    if subs is None:
        return {}
    if not isinstance(subs, dict):
        raise ValueError("subs must map channels to positions")
    found: Positions = {}
    for channel, sub in subs.items():
        if not isinstance(sub, dict):
            raise ValueError(f"subs[{channel[:100]!r}] must be an object")
        if sub.get("recover") is not True:
            continue
        try:
            offset, epoch = stream_position(sub)
        except ReplyError as exc:  # its message names the field
            raise ValueError(f"subs[{channel[:100]!r}]: {exc}") from None
        found[channel] = (epoch, offset)
    return found


def plan(
    config: ClusterConfig, credentials: Credentials, resume: Positions
) -> list[tuple[ServerSub, SubscribeOptions]]:
    """Each server-side subscription to join, with its options: recovery from ``resume``
    where the channel keeps history. Channels of no namespace are left out (and logged)."""
    joins: list[tuple[ServerSub, SubscribeOptions]] = []
    for sub in planned(config, credentials):
        ns = config.namespace(sub.channel)
        if ns is None or not ns.name_allowed(sub.channel):
            log.warning("server-side channel %r is of no namespace; skipped", sub.channel)
            continue
        base = stream_options(
            ns,
            sub.overrides,
            recoverable=True,
            positioned=False,
            join_leave=False,
            chan_info=sub.info,
        )
        epoch, offset = resume.get(sub.channel, ("", 0))
        options = dataclasses.replace(
            base, recover=base.recoverable and sub.channel in resume, offset=offset, epoch=epoch
        )
        joins.append((sub, options))
    return joins
