"""Server frames built once for many sockets: each length form reads back whole."""

from __future__ import annotations

import pytest

from skyrelay.edge.ws.frame import text_frame
from skyrelay.edge.ws.reader import FrameReader, Kind


def server_to_client(frame: bytes) -> bytes:
    """The same frame as a client would send it (masked with a zero key), for the reader."""
    first, second = frame[0], frame[1]
    header = 2 + {126: 2, 127: 8}.get(second, 0)
    return bytes((first, second | 0x80)) + frame[2:header] + b"\0\0\0\0" + frame[header:]


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536])
def test_every_length_form_is_a_final_unmasked_text_frame(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81 and not frame[1] & 0x80
    events = FrameReader(max_message=1 << 20).feed(server_to_client(frame))
    assert [(e.kind, e.data) for e in events] == [(Kind.TEXT, payload.decode())]


def test_the_shortest_length_form_is_used() -> None:
    assert len(text_frame(b"x" * 125)) == 2 + 125
    assert len(text_frame(b"x" * 126)) == 4 + 126
    assert len(text_frame(b"x" * 65_536)) == 10 + 65_536
