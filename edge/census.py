"""What one edge process reports in a survey, without I/O: channel counts filtered by a glob,
node statistics, and which connections a disconnect order matches. Also the checks of the
server API parameters these come from, which fail with 107 naming the field."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from skyrelay.protocol.codes import DISCONNECT_REASONS, DisconnectCode, ErrorCode, ReplyError

# Disconnect codes an API call may give: the WebSocket range for applications and libraries.
# Below it are the WebSocket protocol's own codes, which clients treat differently.
MIN_DISCONNECT_CODE = 3000
MAX_DISCONNECT_CODE = 4999
# A WebSocket close frame carries at most 123 bytes of reason.
MAX_REASON_BYTES = 123


class Connection(Protocol):
    """The parts of a client connection a survey reads."""

    @property
    def id(self) -> str: ...  # pragma: no cover
    @property
    def user(self) -> str: ...  # pragma: no cover
    @property
    def session(self) -> str: ...  # pragma: no cover
    @property
    def subs(self) -> Mapping[str, object | None]: ...  # pragma: no cover


def _bad(message: str) -> ReplyError:
    return ReplyError(ErrorCode.BAD_REQUEST, message)


def pattern_param(params: Mapping[str, Any]) -> str:
    pattern = params.get("pattern")
    if pattern is None:
        return ""
    if not isinstance(pattern, str):
        raise _bad("pattern must be a string")
    return pattern


def channel_matcher(pattern: str) -> Callable[[str], bool]:
    """A shell-style glob (``*``, ``?``, ``[...]``), case-sensitive; empty matches all."""
    if not pattern:
        return lambda _: True
    compiled = re.compile(fnmatch.translate(pattern))
    return lambda name: compiled.match(name) is not None


def count_channels(
    connections: Iterable[Connection], match: Callable[[str], bool]
) -> dict[str, int]:
    """Channel -> subscribed connections here, for the channels ``match`` accepts.
    A subscription still being set up (no channel yet) does not count."""
    counts: dict[str, int] = {}
    for conn in connections:
        for name, held in conn.subs.items():
            if held is not None and match(name):
                counts[name] = counts.get(name, 0) + 1
    return counts


def node_stats(connections: Iterable[Connection]) -> dict[str, int]:
    """Connections, distinct users (anonymous ones count as one), channels, subscriptions."""
    clients = 0
    users: set[str] = set()
    channels: set[str] = set()
    subs = 0
    for conn in connections:
        clients += 1
        users.add(conn.user)
        for name, held in conn.subs.items():
            if held is not None:
                channels.add(name)
                subs += 1
    return {
        "num_clients": clients,
        "num_users": len(users),
        "num_channels": len(channels),
        "num_subs": subs,
    }


@dataclass(frozen=True, slots=True)
class DisconnectOrder:
    """Whose connections to close, and with which code."""

    user: str
    client: str = ""
    session: str = ""
    whitelist: frozenset[str] = frozenset()
    code: int = DisconnectCode.FORCE_DISCONNECT
    reason: str = "force disconnect"

    def matches(self, conn: Connection) -> bool:
        return (
            conn.user == self.user
            and (not self.client or conn.id == self.client)
            and (not self.session or conn.session == self.session)
            and conn.id not in self.whitelist
        )

    def to_params(self) -> dict[str, Any]:
        """The Centrifugo request shape, which ``disconnect_order`` reads back."""
        params: dict[str, Any] = {
            "user": self.user,
            "disconnect": {"code": self.code, "reason": self.reason},
        }
        if self.client:
            params["client"] = self.client
        if self.session:
            params["session"] = self.session
        if self.whitelist:
            params["whitelist"] = sorted(self.whitelist)
        return params


def _optional_string(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    return value


def disconnect_order(params: Mapping[str, Any]) -> DisconnectOrder:
    """Read the server API's ``disconnect`` request (``user`` required; ``disconnect`` code
    0 or absent means 3503, an empty reason the code's usual one)."""
    user = params.get("user")
    if user is None or user == "":
        raise _bad("user is required")
    if not isinstance(user, str):
        raise _bad("user must be a string")
    whitelist = params.get("whitelist")
    if whitelist is None:
        whitelist = []
    if not isinstance(whitelist, list) or not all(isinstance(c, str) for c in whitelist):
        raise _bad("whitelist must be a list of client ids (strings)")
    custom = params.get("disconnect")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise _bad("disconnect must be an object {code, reason}")
    code = custom.get("code", 0)
    if isinstance(code, bool) or not isinstance(code, int):
        raise _bad("disconnect.code must be an integer")
    if code == 0:
        code = DisconnectCode.FORCE_DISCONNECT
    elif not MIN_DISCONNECT_CODE <= code <= MAX_DISCONNECT_CODE:
        raise _bad(
            f"disconnect.code must be between {MIN_DISCONNECT_CODE} and {MAX_DISCONNECT_CODE}"
        )
    reason = custom.get("reason", "")
    if not isinstance(reason, str):
        raise _bad("disconnect.reason must be a string")
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise _bad(f"disconnect.reason must be at most {MAX_REASON_BYTES} bytes")
    return DisconnectOrder(
        user=user,
        client=_optional_string(params, "client"),
        session=_optional_string(params, "session"),
        whitelist=frozenset(whitelist),
        code=int(code),
        reason=reason or DISCONNECT_REASONS.get(code, "disconnect"),
    )
