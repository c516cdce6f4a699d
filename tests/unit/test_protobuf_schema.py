"""Our tables of ``client.proto`` against the module Google's compiler generated from it
(centrifuge-python ships one): every field they both know has the same number and kind."""

from __future__ import annotations

from centrifuge.protocol import client_pb2 as pb
from google.protobuf.descriptor import FieldDescriptor

from skyrelay.protocol.protobuf_schema import MESSAGES, Kind

_SCALARS = {
    FieldDescriptor.TYPE_UINT32: Kind.UINT32,
    FieldDescriptor.TYPE_UINT64: Kind.UINT64,
    FieldDescriptor.TYPE_INT32: Kind.INT32,
    FieldDescriptor.TYPE_INT64: Kind.INT64,
    FieldDescriptor.TYPE_SINT64: Kind.SINT64,
    FieldDescriptor.TYPE_BOOL: Kind.BOOL,
    FieldDescriptor.TYPE_STRING: Kind.STRING,
}
# Ours decodes some messages as others of the same shape.
_SAME_SHAPE = {
    "Leave": "Join",
    "UnsubscribeResult": "Empty",
    "PublishResult": "Empty",
    "PingRequest": "Empty",
    "PingResult": "Empty",
}


def test_fields_match_the_generated_module() -> None:
    checked = 0
    for name, theirs in pb.DESCRIPTOR.message_types_by_name.items():
        ours = MESSAGES.get(_SAME_SHAPE.get(name, name))
        if ours is None:
            continue
        for f in theirs.fields:
            mine = ours.by_number.get(f.number)
            if mine is None:
                assert f.name in ("tf",) or name in ("Publication", "SubRefreshRequest"), (
                    f"{name}.{f.name} missing"
                )
                continue
            assert mine.name == f.name, (name, f.number)
            if f.type in _SCALARS and not _is_repeated(f):
                assert mine.kind is _SCALARS[f.type], (name, f.name)
            elif f.type == FieldDescriptor.TYPE_BYTES:
                assert mine.kind in (Kind.BYTES, Kind.JSON), (name, f.name)
            elif f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                assert mine.kind in (Kind.STRING_MAP, Kind.MESSAGE_MAP), (name, f.name)
            elif f.type == FieldDescriptor.TYPE_MESSAGE and _is_repeated(f):
                assert mine.kind is Kind.MESSAGES, (name, f.name)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                assert mine.kind in (Kind.MESSAGE, Kind.OPAQUE), (name, f.name)
            checked += 1
    assert checked > 150


def _is_repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def test_numbers_and_names_are_unique() -> None:
    for message in MESSAGES.values():
        assert len(message.by_number) == len(message.by_name)
        for f in message.by_number.values():
            if f.kind in (Kind.MESSAGE, Kind.MESSAGES, Kind.MESSAGE_MAP):
                assert f.message is not None
