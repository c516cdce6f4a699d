"""WebSocket framings: one frame per message (a batch included), compressed when agreed and
worth it, built once per kind of connection."""

from __future__ import annotations

import zlib

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.edge.outbox import Outgoing
from skyrelay.edge.ws.deflate import Compressor
from skyrelay.edge.ws.framing import Framings
from skyrelay.protocol.protobuf_wire import split_delimited


def pub(n: int) -> Outgoing:
    data = {"n": n, "text": "some text " * 20}
    return Outgoing.shared(lambda codec: codec.pub_push("c", {"data": data, "offset": n}))


def test_plain_frames() -> None:
    framings = Framings(Compressor(1, 128))
    message = pub(1)
    assert framings.get(json_codec, False).message_frame(message)[0] == 0x81
    frame = framings.get(protobuf_codec, False).message_frame(message)
    assert frame[0] == 0x82
    assert framings.get(protobuf_codec, False) is framings.get(protobuf_codec, False)


def test_a_compressed_batch_is_one_frame_built_once() -> None:
    framings = Framings(Compressor(1, 128))
    batch = Outgoing.batch([pub(1), pub(2), pub(3)])
    framing = framings.get(protobuf_codec, True)
    frame = framing.message_frame(batch)
    assert frame is framing.message_frame(batch)  # shared by every such connection
    assert frame[0] == 0xC2  # final, RSV1, binary
    size = frame[1] & 0x7F
    start = 2 if size < 126 else 4
    payload = zlib.decompressobj(-15).decompress(frame[start:] + b"\x00\x00\xff\xff")
    assert len(split_delimited(payload)) == 3
    assert len(frame) < len(batch.in_codec(protobuf_codec).payload)


def test_short_messages_go_uncompressed() -> None:
    framing = Framings(Compressor(1, 128)).get(json_codec, True)
    assert framing.frame(b"{}")[0] == 0x81
    assert framing.frame(b"x" * 200)[0] == 0xC1
