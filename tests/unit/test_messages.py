"""The protocol's messages, whatever the wire format: which command a decoded message holds."""

from __future__ import annotations

import pytest

from skyrelay.protocol.codes import Disconnect
from skyrelay.protocol.messages import Command, Pong, command_of


def test_the_first_method_present_is_the_command() -> None:
    assert command_of(3, {"id": 3, "history": {"channel": "c"}}) == Command(
        3, "history", {"channel": "c"}
    )
    assert command_of(4, {"presence": None}) == Command(4, "presence", {})
    assert command_of(0, {"send": {"data": 1}}) == Command(0, "send", {"data": 1})
    assert command_of(0, {}) == Pong()


@pytest.mark.parametrize(
    ("cmd_id", "fields", "reason"),
    [
        (5, {"publish": []}, "publish must be an object"),
        (0, {"subscribe": {}}, "command without id"),
        (7, {"ping": {}}, "unknown command"),
    ],
)
def test_malformed_commands_are_a_bad_request(
    cmd_id: int, fields: dict[str, object], reason: str
) -> None:
    with pytest.raises(Disconnect) as caught:
        command_of(cmd_id, fields)
    assert (caught.value.code, caught.value.reason) == (3501, reason)
