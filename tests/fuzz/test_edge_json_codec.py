"""The client-protocol codec: any bytes decode to commands or raise Disconnect (3501), and
well-formed commands come back as they went in."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay.edge import json_codec
from skyrelay.protocol.codes import Disconnect, DisconnectCode
from skyrelay.protocol.messages import METHODS, Command, Pong
from tests.fuzz.strategies import INT64, json_objects, json_values

METHOD_NAMES = st.sampled_from(METHODS)

# Structured but wrong: objects with method keys, ids and params of any type.
wrong_commands = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(INT64, json_values),
        "connect": json_values,
        "subscribe": json_values,
        "publish": json_values,
        "send": json_values,
        "frobnicate": json_values,
    },
).flatmap(lambda base: json_objects.map(lambda extra: {**extra, **base}))


def _decode(data: bytes | str) -> list[Command | Pong] | None:
    try:
        return json_codec.decode_commands(data)
    except Disconnect as exc:
        assert exc.code == DisconnectCode.BAD_REQUEST
        assert exc.reason
        return None


@given(st.binary(max_size=200))
@example(b"\n")
@example(b"{}\n\n{}")
@example(b'{"id":1,"connect":{}}\r\n')
@example("[" * 2000)
def test_any_bytes_decode_or_disconnect(data: bytes) -> None:
    _decode(data)


@given(st.text(max_size=100))
@example("{}\ud800")
@example('{"id":1,"connect":{"token":"\udfff"}}')
def test_any_text_decodes_or_disconnects(data: str) -> None:
    # Text from a JSON string (POST /emulation ``data``) may hold lone surrogates.
    _decode(data)


@given(st.lists(wrong_commands, min_size=1, max_size=4))
def test_structured_but_wrong_commands(commands: list[dict[str, Any]]) -> None:
    data = b"\n".join(orjson.dumps(c) for c in commands)
    decoded = _decode(data)
    if decoded is not None:
        assert len(decoded) == len(commands)
        for command in decoded:
            if isinstance(command, Command):
                assert isinstance(command.params, dict)
                assert 0 <= command.id < 2**32
                assert command.method in METHODS


@given(
    st.lists(
        st.tuples(st.integers(1, 2**32 - 1), METHOD_NAMES, json_objects),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_valid_commands_round_trip(
    commands: list[tuple[int, str, dict[str, Any]]], trailing_newline: bool
) -> None:
    message = b"\n".join(orjson.dumps({"id": i, m: p}) for i, m, p in commands)
    if trailing_newline:
        message += b"\n"
    decoded = json_codec.decode_commands(message)
    assert decoded == [Command(i, m, p) for i, m, p in commands]


@given(st.integers(0, 2**32 - 1), json_objects)
def test_send_without_id_and_pongs(cmd_id: int, params: dict[str, Any]) -> None:
    assert json_codec.decode_commands(orjson.dumps({"send": params})) == [
        Command(0, "send", params)
    ]
    assert json_codec.decode_commands(b"{}") == [Pong()]


@given(json_values)
def test_depth_check_never_raises(value: Any) -> None:
    assert isinstance(json_codec.data_depth_ok(value), bool)


@given(st.integers(1, 300))
def test_depth_check_counts_levels(depth: int) -> None:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    assert json_codec.data_depth_ok(value) == (depth <= json_codec.MAX_DATA_DEPTH)
