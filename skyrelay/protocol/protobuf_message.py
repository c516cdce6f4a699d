"""Protobuf messages to and from the protocol's dicts, driven by ``protobuf_schema``. Pure code.

The dicts are the ones the JSON wire format carries: the same names, zero values omitted,
``bytes`` fields that hold JSON (publication data, connection info) as their JSON value. Data
that is not JSON stays ``bytes`` in a decoded dict, and a ``bytes`` value is written as it is.

What belongs here: the mapping, strictly (a field of the wrong wire type, a number out of its
range, text that is not UTF-8: ``ProtobufError``). Fields we do not know are skipped, as
protobuf wants, so newer clients keep working. What never does: framing of several messages
(``protobuf_wire``) or what the protocol does with a command.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.protocol.protobuf_schema import MESSAGES, Field, Kind, Message
from skyrelay.protocol.protobuf_wire import (
    LEN,
    VARINT,
    ProtobufError,
    encode_varint,
    iter_fields,
)

_U32 = (1 << 32) - 1
_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1
_SIGN = 1 << 63
_WRAP = 1 << 64


def message(name: str) -> Message:
    return MESSAGES[name]


# Encoding.


def encode(schema: Message, obj: dict[str, Any]) -> bytes:
    """``obj`` as the message ``schema``; keys the message has no field for are left out."""
    out = bytearray()
    _encode_into(out, schema, obj)
    return bytes(out)


def _encode_into(out: bytearray, schema: Message, obj: dict[str, Any]) -> None:
    by_name = schema.by_name
    for name, value in obj.items():
        f = by_name.get(name)
        if f is None:
            continue
        kind = f.kind
        if kind is Kind.MESSAGE:
            if value is None:
                continue
            assert f.message is not None
            # Present even when empty: a reply's method is the field it carries.
            _put_len(out, f.tag, encode(f.message, value))
        elif kind is Kind.JSON:
            _put_len(out, f.tag, value if isinstance(value, bytes) else orjson.dumps(value))
        elif not value:
            continue  # proto3 leaves zero values out
        elif kind is Kind.STRING:
            _put_len(out, f.tag, value.encode())
        elif kind is Kind.UINT32 or kind is Kind.UINT64 or kind is Kind.INT64:
            out += f.tag
            out += encode_varint(int(value))
        elif kind is Kind.BOOL:
            out += f.tag
            out += b"\x01"
        elif kind is Kind.INT32:
            out += f.tag
            out += encode_varint(int(value))
        elif kind is Kind.SINT64:
            n = int(value)
            out += f.tag
            out += encode_varint((n << 1) ^ (n >> 63))
        elif kind is Kind.BYTES or kind is Kind.OPAQUE:
            _put_len(out, f.tag, bytes(value))
        elif kind is Kind.MESSAGES:
            assert f.message is not None
            for item in value:
                _put_len(out, f.tag, encode(f.message, item))
        elif kind is Kind.STRINGS:
            for item in value:
                _put_len(out, f.tag, item.encode())
        elif kind is Kind.STRING_MAP:
            for k, v in value.items():
                _put_len(out, f.tag, _entry(b"\x0a", k.encode(), v.encode()))
        elif kind is Kind.MESSAGE_MAP:
            assert f.message is not None
            for k, v in value.items():
                _put_len(out, f.tag, _entry(b"\x0a", k.encode(), encode(f.message, v)))


def _entry(key_tag: bytes, k: bytes, v: bytes) -> bytes:
    return key_tag + encode_varint(len(k)) + k + b"\x12" + encode_varint(len(v)) + v


def _put_len(out: bytearray, tag: bytes, payload: bytes) -> None:
    out += tag
    out += encode_varint(len(payload))
    out += payload


# Decoding.


def decode(schema: Message, data: bytes) -> dict[str, Any]:
    """The message ``schema`` in ``data``; raises ProtobufError on anything malformed."""
    return _decode(schema, data, 0, len(data))


def _decode(schema: Message, data: bytes, pos: int, end: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_number = schema.by_number
    for number, wire_type, value, stop in iter_fields(data, pos, end):
        f = by_number.get(number)
        if f is None:
            continue
        if wire_type != f.wire_type:
            raise ProtobufError(f"{schema.name}.{f.name} has the wrong wire type")
        if wire_type == VARINT:
            out[f.name] = _scalar(f, value)
            continue
        assert wire_type == LEN
        kind = f.kind
        if kind is Kind.STRING:
            out[f.name] = _text(data, value, stop)
        elif kind is Kind.MESSAGE:
            assert f.message is not None
            out[f.name] = _decode(f.message, data, value, stop)
        elif kind is Kind.JSON:
            if stop > value:
                out[f.name] = json_value(data[value:stop])
        elif kind is Kind.BYTES or kind is Kind.OPAQUE:
            out[f.name] = data[value:stop]
        elif kind is Kind.MESSAGES:
            assert f.message is not None
            out.setdefault(f.name, []).append(_decode(f.message, data, value, stop))
        elif kind is Kind.STRINGS:
            out.setdefault(f.name, []).append(_text(data, value, stop))
        else:
            k, v = _map_entry(f, data, value, stop)
            out.setdefault(f.name, {})[k] = v
    return out


def json_value(raw: bytes) -> Any:
    """The JSON value ``raw`` holds, or ``raw`` itself when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _scalar(f: Field, value: int) -> Any:
    kind = f.kind
    if kind is Kind.BOOL:
        return value != 0
    if kind is Kind.UINT64:
        return value
    if kind is Kind.UINT32:
        if value > _U32:
            raise ProtobufError(f"{f.name} is over 32 bits")
        return value
    if kind is Kind.SINT64:
        return (value >> 1) ^ -(value & 1)
    signed = value - _WRAP if value & _SIGN else value
    if kind is Kind.INT32 and not _I32_MIN <= signed <= _I32_MAX:
        raise ProtobufError(f"{f.name} is out of the 32-bit range")
    return signed


def _text(data: bytes, start: int, stop: int) -> str:
    try:
        return data[start:stop].decode()
    except UnicodeDecodeError:
        raise ProtobufError("a string field is not valid UTF-8") from None


def _map_entry(f: Field, data: bytes, pos: int, end: int) -> tuple[str, Any]:
    k = ""
    v: Any = {} if f.kind is Kind.MESSAGE_MAP else ""
    for number, wire_type, value, stop in iter_fields(data, pos, end):
        if number not in (1, 2):
            continue
        if wire_type != LEN:
            raise ProtobufError(f"an entry of {f.name} has the wrong wire type")
        if number == 1:
            k = _text(data, value, stop)
        elif f.message is not None:
            v = _decode(f.message, data, value, stop)
        else:
            v = _text(data, value, stop)
    return k, v
