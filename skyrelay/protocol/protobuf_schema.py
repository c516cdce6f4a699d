"""The messages of ``client.proto`` (centrifugal/protocol, client protocol v2) as tables: each
field's number, name and kind. Written from the published ``.proto``, not generated: the codec
maps these fields straight onto the dicts the JSON side already uses (the JSON names are the
``.proto`` names), so the edge and the SDK never see which wire format a client speaks.

What belongs here: field numbers and kinds, nothing else. What never does: how a kind is
encoded (``protobuf_message``) or what a field means to a server (``edge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from skyrelay.protocol.protobuf_wire import LEN, VARINT, key


class Kind(Enum):
    UINT32 = "uint32"
    UINT64 = "uint64"
    INT32 = "int32"
    INT64 = "int64"
    SINT64 = "sint64"
    BOOL = "bool"
    STRING = "string"
    BYTES = "bytes"  # raw bytes, kept as they are
    JSON = "json"  # bytes that carry a JSON document: decoded to its value where it is one
    OPAQUE = "opaque"  # a message we do not decode (tag filters): kept as its bytes
    MESSAGE = "message"
    STRINGS = "strings"  # repeated string
    MESSAGES = "messages"  # repeated message
    STRING_MAP = "string_map"  # map<string, string>
    MESSAGE_MAP = "message_map"  # map<string, message>


_WIRE_TYPE = {
    Kind.UINT32: VARINT,
    Kind.UINT64: VARINT,
    Kind.INT32: VARINT,
    Kind.INT64: VARINT,
    Kind.SINT64: VARINT,
    Kind.BOOL: VARINT,
}


@dataclass(slots=True)
class Field:
    number: int
    name: str
    kind: Kind
    message_name: str = ""
    # Filled in once every message is known.
    message: Message | None = field(default=None, repr=False)
    wire_type: int = LEN
    tag: bytes = b""


@dataclass(slots=True)
class Message:
    name: str
    by_number: dict[int, Field]
    by_name: dict[str, Field]


_K = Kind
# name: [(number, field name, kind or message name, and "[]" / "{}" for repeated / map)].
_TABLES: dict[str, list[tuple[int, str, Kind | str]]] = {
    "Error": [(1, "code", _K.UINT32), (2, "message", _K.STRING), (3, "temporary", _K.BOOL)],
    "EmulationRequest": [(1, "node", _K.STRING), (2, "session", _K.STRING), (3, "data", _K.BYTES)],
    "Command": [
        (1, "id", _K.UINT32),
        (4, "connect", "ConnectRequest"),
        (5, "subscribe", "SubscribeRequest"),
        (6, "unsubscribe", "UnsubscribeRequest"),
        (7, "publish", "PublishRequest"),
        (8, "presence", "PresenceRequest"),
        (9, "presence_stats", "PresenceStatsRequest"),
        (10, "history", "HistoryRequest"),
        (11, "ping", "Empty"),
        (12, "send", "SendRequest"),
        (13, "rpc", "RPCRequest"),
        (14, "refresh", "RefreshRequest"),
        (15, "sub_refresh", "SubRefreshRequest"),
    ],
    "Reply": [
        (1, "id", _K.UINT32),
        (2, "error", "Error"),
        (4, "push", "Push"),
        (5, "connect", "ConnectResult"),
        (6, "subscribe", "SubscribeResult"),
        (7, "unsubscribe", "Empty"),
        (8, "publish", "Empty"),
        (9, "presence", "PresenceResult"),
        (10, "presence_stats", "PresenceStatsResult"),
        (11, "history", "HistoryResult"),
        (12, "ping", "Empty"),
        (13, "rpc", "RPCResult"),
        (14, "refresh", "RefreshResult"),
        (15, "sub_refresh", "SubRefreshResult"),
    ],
    "Push": [
        (1, "id", _K.INT64),
        (2, "channel", _K.STRING),
        (4, "pub", "Publication"),
        (5, "join", "Join"),
        (6, "leave", "Join"),
        (7, "unsubscribe", "Unsubscribe"),
        (8, "message", "Message"),
        (9, "subscribe", "Subscribe"),
        (10, "connect", "Connect"),
        (11, "disconnect", "Disconnect"),
        (12, "refresh", "Refresh"),
    ],
    "Empty": [],
    "ClientInfo": [
        (1, "user", _K.STRING),
        (2, "client", _K.STRING),
        (3, "conn_info", _K.JSON),
        (4, "chan_info", _K.JSON),
    ],
    "Publication": [
        (4, "data", _K.JSON),
        (5, "info", "ClientInfo"),
        (6, "offset", _K.UINT64),
        (7, "tags", _K.STRING_MAP),
        (8, "delta", _K.BOOL),
        (9, "time", _K.INT64),
        (10, "channel", _K.STRING),
        (11, "key", _K.STRING),
        (12, "removed", _K.BOOL),
        (13, "score", _K.SINT64),
        (14, "epoch", _K.STRING),
        (15, "prev_data", _K.BYTES),
        (16, "version", _K.UINT64),
    ],
    "Join": [(1, "info", "ClientInfo")],
    "Unsubscribe": [(2, "code", _K.UINT32), (3, "reason", _K.STRING)],
    "Subscribe": [
        (1, "recoverable", _K.BOOL),
        (4, "epoch", _K.STRING),
        (5, "offset", _K.UINT64),
        (6, "positioned", _K.BOOL),
        (7, "data", _K.JSON),
    ],
    "Message": [(1, "data", _K.JSON)],
    "Connect": [
        (1, "client", _K.STRING),
        (2, "version", _K.STRING),
        (3, "data", _K.JSON),
        (4, "subs", "{SubscribeResult}"),
        (5, "expires", _K.BOOL),
        (6, "ttl", _K.UINT32),
        (7, "ping", _K.UINT32),
        (8, "pong", _K.BOOL),
        (9, "session", _K.STRING),
        (10, "node", _K.STRING),
        (11, "time", _K.INT64),
    ],
    "Disconnect": [(1, "code", _K.UINT32), (2, "reason", _K.STRING), (3, "reconnect", _K.BOOL)],
    "Refresh": [(1, "expires", _K.BOOL), (2, "ttl", _K.UINT32)],
    "ConnectRequest": [
        (1, "token", _K.STRING),
        (2, "data", _K.JSON),
        (3, "subs", "{SubscribeRequest}"),
        (4, "name", _K.STRING),
        (5, "version", _K.STRING),
        (6, "headers", _K.STRING_MAP),
        (7, "flag", _K.INT64),
        (8, "dict", _K.STRING),
        (9, "profile", _K.STRING),
    ],
    "ConnectResult": [
        (1, "client", _K.STRING),
        (2, "version", _K.STRING),
        (3, "expires", _K.BOOL),
        (4, "ttl", _K.UINT32),
        (5, "data", _K.JSON),
        (6, "subs", "{SubscribeResult}"),
        (7, "ping", _K.UINT32),
        (8, "pong", _K.BOOL),
        (9, "session", _K.STRING),
        (10, "node", _K.STRING),
        (11, "time", _K.INT64),
        (12, "flag", _K.INT64),
    ],
    "RefreshRequest": [(1, "token", _K.STRING)],
    "RefreshResult": [
        (1, "client", _K.STRING),
        (2, "version", _K.STRING),
        (3, "expires", _K.BOOL),
        (4, "ttl", _K.UINT32),
    ],
    "SubscribeRequest": [
        (1, "channel", _K.STRING),
        (2, "token", _K.STRING),
        (3, "recover", _K.BOOL),
        (6, "epoch", _K.STRING),
        (7, "offset", _K.UINT64),
        (8, "data", _K.JSON),
        (9, "positioned", _K.BOOL),
        (10, "recoverable", _K.BOOL),
        (11, "join_leave", _K.BOOL),
        (12, "delta", _K.STRING),
        (13, "tf", _K.OPAQUE),
        (14, "flag", _K.INT64),
        (15, "type", _K.INT32),
        (16, "phase", _K.INT32),
        (17, "cursor", _K.STRING),
        (18, "limit", _K.INT32),
        (19, "asc", _K.BOOL),
    ],
    "SubscribeResult": [
        (1, "expires", _K.BOOL),
        (2, "ttl", _K.UINT32),
        (3, "recoverable", _K.BOOL),
        (6, "epoch", _K.STRING),
        (7, "publications", "[Publication]"),
        (8, "recovered", _K.BOOL),
        (9, "offset", _K.UINT64),
        (10, "positioned", _K.BOOL),
        (11, "data", _K.JSON),
        (12, "was_recovering", _K.BOOL),
        (13, "delta", _K.BOOL),
        (14, "id", _K.INT64),
        (15, "type", _K.INT32),
        (16, "phase", _K.INT32),
        (17, "cursor", _K.STRING),
        (18, "state", "[Publication]"),
        (19, "publish_debounce", _K.UINT32),
    ],
    "SubRefreshRequest": [
        (1, "channel", _K.STRING),
        (2, "token", _K.STRING),
        (3, "type", _K.INT32),
    ],
    "SubRefreshResult": [(1, "expires", _K.BOOL), (2, "ttl", _K.UINT32)],
    "UnsubscribeRequest": [(1, "channel", _K.STRING)],
    "PublishRequest": [
        (1, "channel", _K.STRING),
        (2, "data", _K.JSON),
        (3, "type", _K.INT32),
        (4, "key", _K.STRING),
        (5, "removed", _K.BOOL),
    ],
    "PresenceRequest": [(1, "channel", _K.STRING)],
    "PresenceResult": [(1, "presence", "{ClientInfo}")],
    "PresenceStatsRequest": [(1, "channel", _K.STRING)],
    "PresenceStatsResult": [(1, "num_clients", _K.UINT32), (2, "num_users", _K.UINT32)],
    "StreamPosition": [(1, "offset", _K.UINT64), (2, "epoch", _K.STRING)],
    "HistoryRequest": [
        (1, "channel", _K.STRING),
        (7, "limit", _K.INT32),
        (8, "since", "StreamPosition"),
        (9, "reverse", _K.BOOL),
    ],
    "HistoryResult": [
        (1, "publications", "[Publication]"),
        (2, "epoch", _K.STRING),
        (3, "offset", _K.UINT64),
    ],
    "RPCRequest": [(1, "data", _K.JSON), (2, "method", _K.STRING)],
    "RPCResult": [(1, "data", _K.JSON)],
    "SendRequest": [(1, "data", _K.JSON)],
}


def _build() -> dict[str, Message]:
    messages: dict[str, Message] = {}
    pending: list[Field] = []
    for name, rows in _TABLES.items():
        fields = []
        for number, field_name, spec in rows:
            if isinstance(spec, Kind):
                f = Field(number, field_name, spec, wire_type=_WIRE_TYPE.get(spec, LEN))
            else:
                if spec.startswith("["):
                    kind, target = Kind.MESSAGES, spec[1:-1]
                elif spec.startswith("{"):
                    kind, target = Kind.MESSAGE_MAP, spec[1:-1]
                else:
                    kind, target = Kind.MESSAGE, spec
                f = Field(number, field_name, kind, target)
                pending.append(f)
            f.tag = key(number, f.wire_type)
            fields.append(f)
        messages[name] = Message(name, {f.number: f for f in fields}, {f.name: f for f in fields})
    for f in pending:
        f.message = messages[f.message_name]
    return messages


MESSAGES = _build()
