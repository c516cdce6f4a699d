"""POST /emulation bodies, JSON or protobuf, told apart by their first byte."""

from __future__ import annotations

import pytest
from centrifuge.protocol import client_pb2 as pb

from skyrelay.edge.emulation_request import EmulationRequest, is_protobuf, parse


def test_a_json_body_keeps_its_commands_as_text() -> None:
    body = b'{"session":"s","node":"n","data":"{\\"id\\":2}"}'
    assert parse(body) == EmulationRequest("n", "s", '{"id":2}')


def test_a_protobuf_body_keeps_its_commands_as_bytes() -> None:
    body = pb.EmulationRequest(node="n", session="s", data=b"\x02\x08\x02").SerializeToString()
    assert parse(body) == EmulationRequest("n", "s", b"\x02\x08\x02")


@pytest.mark.parametrize(
    "body", [b"{", b'{"session":1,"node":"n","data":""}', b"[]", b"\x0a\x05n", b"\x0b"]
)
def test_bad_bodies_name_the_problem(body: bytes) -> None:
    with pytest.raises(ValueError, match="body"):
        parse(body)


def test_the_stream_format_comes_from_the_content_type() -> None:
    assert is_protobuf("application/octet-stream")
    assert is_protobuf("Application/Octet-Stream; charset=binary")
    assert not is_protobuf("application/json")
