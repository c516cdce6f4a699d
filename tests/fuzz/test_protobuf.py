"""The protobuf wire format: any bytes decode to commands or a 3501, every well-formed message
comes back as it went in, and any frame a protobuf client sends over a real WebSocket gets
replies or a clear close, never an internal error."""

from __future__ import annotations

from typing import Any

import aiohttp
from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay.client import protobuf_codec as client_codec
from skyrelay.edge import protobuf_codec
from skyrelay.protocol.codes import Disconnect, DisconnectCode
from skyrelay.protocol.messages import METHODS, Command, Pong
from skyrelay.protocol.protobuf_message import decode, encode, message
from skyrelay.protocol.protobuf_wire import ProtobufError, delimited, split_delimited
from tests.fuzz.edgehost import EdgeHost
from tests.fuzz.strategies import channel_names, json_values

TOKEN = EdgeHost.token_for("pb-fuzzer")
SENTINEL = 4_000_000_000
SERVER_FAULTS = {1011, 3004}
U32 = st.integers(0, 2**32 - 1)


def _decode(data: bytes) -> list[Command | Pong] | None:
    try:
        return protobuf_codec.decode_commands(data)
    except Disconnect as exc:
        assert exc.code == DisconnectCode.BAD_REQUEST
        assert exc.reason
        return None


@given(st.binary(max_size=300))
@example(b"\x05\x08")
@example(b"\xff" * 12)
@example(b"\x0b\x22\x09\x22\x07\x1a\x05\xff\xff\xff\xff\x0f")
def test_any_bytes_decode_or_disconnect(data: bytes) -> None:
    _decode(data)


params = st.fixed_dictionaries(
    {},
    optional={
        "channel": channel_names,
        "token": st.text(max_size=20),
        "data": json_values,
        "recover": st.booleans(),
        "offset": st.integers(0, 2**64 - 1),
        "epoch": st.text(max_size=8),
        "limit": st.integers(-(2**31), 2**31 - 1),
        "method": st.text(max_size=8),
        "delta": st.sampled_from(["", "fossil", "zstd"]),
        "flag": st.integers(-(2**63), 2**63 - 1),
    },
)
commands = st.builds(
    lambda i, m, p: {"id": i, m: p}, st.integers(1, 2**32 - 1), st.sampled_from(METHODS), params
)


@given(st.lists(commands, min_size=1, max_size=4))
def test_well_formed_commands_come_back_as_they_went_in(sent: list[dict[str, Any]]) -> None:
    data = client_codec.encode(sent)
    decoded = protobuf_codec.decode_commands(data)
    schema = message("Command")
    for original, got in zip(sent, decoded, strict=True):
        assert isinstance(got, Command)
        # What the schema holds of it: fields of other commands are not in this one's message.
        expected = decode(schema, encode(schema, original))
        method = next(m for m in METHODS if m in original)
        assert (got.id, got.method, got.params) == (original["id"], method, expected[method])


@given(st.lists(commands, min_size=1, max_size=3), st.data())
def test_damaged_frames_never_raise_anything_else(
    sent: list[dict[str, Any]], data: st.DataObject
) -> None:
    frame = bytearray(client_codec.encode(sent))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(frame) - 1))
        frame[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    _decode(bytes(frame[:cut]))


@given(st.binary(max_size=200))
def test_the_client_half_reads_any_bytes_or_says_protocol_error(data: bytes) -> None:
    try:
        client_codec.decode(data)
    except Exception as exc:
        assert type(exc).__name__ == "ProtocolError", exc


async def _exchange(host: EdgeHost, frames: list[bytes]) -> tuple[list[dict[str, Any]], int | None]:
    assert host.session is not None
    replies: list[dict[str, Any]] = []
    url = f"ws://127.0.0.1:{host.edge_port}/connection/websocket"
    reply_schema = message("Reply")
    async with host.session.ws_connect(
        url, autoclose=False, autoping=True, protocols=("centrifuge-protobuf",)
    ) as ws:

        async def until_reply(cmd_id: int) -> bool:
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    return False
                for raw in split_delimited(msg.data):
                    obj = decode(reply_schema, raw)
                    replies.append(obj)
                    if obj.get("id") == cmd_id:
                        return True
                    if not obj:
                        await ws.send_bytes(client_codec.PONG)

        await ws.send_bytes(client_codec.encode([{"id": 1, "connect": {"token": TOKEN}}]))
        if not await until_reply(1):
            return replies, ws.close_code
        probe = client_codec.encode([{"id": SENTINEL, "presence_stats": {"channel": "nohist:x"}}])
        for frame in frames:
            await ws.send_bytes(frame)
            await ws.send_bytes(probe)
            if not await until_reply(SENTINEL):
                return replies, ws.close_code
        return replies, None


frames = st.lists(
    st.one_of(
        st.lists(commands, min_size=1, max_size=3).map(client_codec.encode),
        st.binary(min_size=1, max_size=60),
        st.binary(min_size=1, max_size=60).map(delimited),
    ),
    max_size=4,
)


@given(frames)
@example([b"\x02\x08\x02"])
@example([client_codec.encode([{"id": 2, "subscribe": {"channel": "news", "delta": "fossil"}}])])
def test_any_frames_get_replies_or_a_clear_close(edge_host: EdgeHost, sent: list[bytes]) -> None:
    host = edge_host
    try:
        replies, code = host.call(lambda: _exchange(host, sent))
    except ProtobufError as exc:  # the edge must never send what does not decode
        raise AssertionError(f"undecodable reply: {exc}") from None
    assert code not in SERVER_FAULTS, (code, replies[-3:])
    for reply in replies:
        error = reply.get("error")
        if error is not None:
            assert error.get("code") != 100 or error.get("temporary"), reply
    assert host.take_tracebacks() == []
