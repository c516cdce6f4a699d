"""One table into its dataclass: types checked, unknown keys refused, errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from skyrelay.config import ConfigError
from skyrelay.config.tables import build, check_value


@dataclass(frozen=True)
class Sample:
    name: str
    count: int = 1
    ratio: float = 0.5
    on: bool = False
    mode: Literal["a", "b"] = "a"
    tags: tuple[str, ...] = ()


def test_a_good_table_builds() -> None:
    sample = build(Sample, "s", {"name": "x", "count": 2, "ratio": 1, "tags": ["t"], "mode": "b"})
    assert sample == Sample("x", 2, 1.0, False, "b", ("t",))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "s: missing required setting"),
        ({"name": "x", "nope": 1}, "s.nope: unknown setting"),
        ({"name": "x", "count": True}, "s.count: expected an integer"),
        ({"name": "x", "count": -1}, "s.count: must not be negative"),
        ({"name": "x", "ratio": float("nan")}, "s.ratio: expected a finite number"),
        ({"name": "x", "on": "yes"}, "s.on: expected true or false"),
        ({"name": "x", "mode": "c"}, "s.mode: expected one of a, b"),
        ({"name": "x", "tags": [1]}, "s.tags: expected a list of strings"),
        ([], "s: expected a table"),
    ],
)
def test_a_bad_table_names_its_key(table: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build(Sample, "s", table)


def test_check_value_passes_good_values_through() -> None:
    assert check_value("k", 3, float) == 3.0
    assert check_value("k", "v", str) == "v"
