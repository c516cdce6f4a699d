"""The sans-I/O WebSocket opening handshake (no sockets)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from skyrelay.edge.ws.handshake import WireFormat, accept_response, parse_upgrade, wire_format

UPGRADE = (
    b"GET /connection/websocket?format=json HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: https://app.example"
)


def test_a_plain_upgrade_is_taken_with_the_rfc_accept_key() -> None:
    upgrade = parse_upgrade(UPGRADE)
    assert upgrade is not None and upgrade.origin == "https://app.example"
    response = accept_response(upgrade.key)
    # The example of RFC 6455 section 1.3.
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    expected = base64.b64encode(
        hashlib.sha1(upgrade.key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    assert expected in response


@pytest.mark.parametrize(
    "head",
    [
        UPGRADE.replace(b"GET ", b"POST "),
        UPGRADE.replace(b"/connection/websocket", b"/connection/websocketx"),
        UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        UPGRADE.replace(b"Version: 13", b"Version: 8"),
        UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        UPGRADE.replace(b"keep-alive, Upgrade", b"keep-alive"),
        UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),
        UPGRADE.replace(b"Host: e\r\n", b""),
        UPGRADE + b"\r\nContent-Length: 5",
        UPGRADE + b"\r\nHost: other",
        UPGRADE + b"\r\n folded",
        UPGRADE + b"\r\nOrigin: \xff",
    ],
)
def test_anything_but_a_plain_upgrade_goes_to_the_http_server(head: bytes) -> None:
    assert parse_upgrade(head) is None


def test_offered_extensions_are_handed_on_and_answered() -> None:
    offer = UPGRADE + b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    upgrade = parse_upgrade(offer)
    assert upgrade is not None
    assert upgrade.extensions == "permessage-deflate; client_max_window_bits"
    answer = accept_response(upgrade.key, None, "permessage-deflate; server_no_context_takeover")
    assert (
        b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        in answer
    )


@pytest.mark.parametrize(
    ("offered", "query", "protobuf", "echoed"),
    [
        (None, "", False, None),
        ("centrifuge-protobuf", "", True, "centrifuge-protobuf"),
        ("centrifuge-json", "", False, "centrifuge-json"),
        ("chat, centrifuge-protobuf", "", True, "centrifuge-protobuf"),
        ("chat", "", False, None),  # never echo what we do not speak
        (None, "cf_protocol=protobuf", True, None),
        (None, "format=protobuf", True, None),
        (None, "cf_protocol=json", False, None),
    ],
)
def test_the_wire_format_is_chosen_from_the_subprotocol_or_the_query(
    offered: str | None, query: str, protobuf: bool, echoed: str | None
) -> None:
    assert wire_format(offered, query) == WireFormat(protobuf, echoed)


def test_a_protobuf_upgrade_is_taken_and_answered_with_its_subprotocol() -> None:
    upgrade = parse_upgrade(UPGRADE + b"\r\nSec-WebSocket-Protocol: centrifuge-protobuf")
    assert upgrade is not None and upgrade.format.protobuf
    answer = accept_response(upgrade.key, upgrade.format.subprotocol)
    assert b"\r\nSec-WebSocket-Protocol: centrifuge-protobuf\r\n\r\n" in answer
    assert b"Sec-WebSocket-Protocol" not in accept_response(upgrade.key)
