"""The client command line's argument parsing."""

from __future__ import annotations

import pytest

from skyrelay.client.cli import parse_since


def test_since_parses_offsets_and_positions() -> None:
    assert parse_since(None) is None
    assert parse_since("0") == 0
    assert parse_since("ab12:7") == ("ab12", 7)
    with pytest.raises(ValueError, match="EPOCH:OFFSET"):
        parse_since("x")
