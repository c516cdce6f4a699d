"""permessage-deflate: negotiation, the shared compressor, a connection's decompressor."""

from __future__ import annotations

import zlib

import pytest

from skyrelay.edge.ws.deflate import Agreement, Compressor, Decompressor, negotiate


@pytest.mark.parametrize(
    ("offers", "agreed"),
    [
        ("permessage-deflate", Agreement(False, 15)),
        ("permessage-deflate; client_max_window_bits", Agreement(False, 10)),
        ("permessage-deflate; client_max_window_bits=9", Agreement(False, 9)),
        ("permessage-deflate; client_max_window_bits=12", Agreement(False, 10)),
        ("permessage-deflate; client_no_context_takeover", Agreement(True, 15)),
        ("permessage-deflate; server_no_context_takeover", Agreement(False, 15)),
        ("permessage-deflate; server_max_window_bits=15", Agreement(False, 15)),
        # An offer we cannot take, then one we can.
        ("permessage-deflate; server_max_window_bits=10, permessage-deflate", Agreement(False, 15)),
        ("permessage-deflate; server_max_window_bits=10", None),
        ("permessage-deflate; client_max_window_bits=20", None),
        ("permessage-deflate; mystery", None),
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_negotiation(offers: str, agreed: Agreement | None) -> None:
    assert negotiate(offers, 10) == agreed


def test_the_answer_names_what_was_agreed() -> None:
    assert Agreement(False, 15).response() == "permessage-deflate; server_no_context_takeover"
    assert Agreement(True, 10).response() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "client_max_window_bits=10"
    )


def test_each_message_decompresses_on_its_own() -> None:
    compressor = Compressor(1, 0)
    messages = [b'{"push":{"channel":"c","pub":{"data":%d}}}' % n * 20 for n in range(5)]
    for message in messages:
        # A client that resets its decompressor per message reads every one.
        inflate = zlib.decompressobj(-15)
        assert inflate.decompress(compressor.compress(message) + b"\x00\x00\xff\xff") == message
    # And one that keeps its context reads them in any order.
    inflate = zlib.decompressobj(-15)
    for message in reversed(messages):
        assert inflate.decompress(compressor.compress(message) + b"\x00\x00\xff\xff") == message


def _client_compress(data: bytes, bits: int = 15) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def test_the_decompressor_keeps_context_or_not_as_agreed() -> None:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -10)
    first = deflate.compress(b"hello hello") + deflate.flush(zlib.Z_SYNC_FLUSH)
    second = deflate.compress(b"hello hello") + deflate.flush(zlib.Z_SYNC_FLUSH)
    keeps = Decompressor(Agreement(False, 10), 1000)
    assert keeps.decompress(first[:-4]) == b"hello hello"
    assert keeps.decompress(second[:-4]) == b"hello hello"  # refers back to the first
    fresh = Decompressor(Agreement(True, 10), 1000)
    assert fresh.decompress(_client_compress(b"abc", 10)) == b"abc"
    assert fresh.decompress(_client_compress(b"abc", 10)) == b"abc"


def test_a_message_that_inflates_past_the_limit_is_refused() -> None:
    bomb = _client_compress(b"x" * 1_000_000)
    assert len(bomb) < 2000
    assert Decompressor(Agreement(False, 15), 65536).decompress(bomb) is None
    with pytest.raises(zlib.error):
        Decompressor(Agreement(False, 15), 65536).decompress(b"\xff\xff\xff")
