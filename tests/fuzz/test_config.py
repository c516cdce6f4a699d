"""The config loader: any TOML-like document either loads or fails with a ConfigError whose
message starts with the key at fault; what loads holds only sane values."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay import config
from skyrelay.config import ClusterConfig, ConfigError, load_config, parse_config
from tests.fuzz.strategies import json_values

TOP_LEVEL = config.TOP_LEVEL_KEYS
# What TOML can hold beyond JSON: infinities, NaN, and 64-bit integers.
toml_scalars = st.one_of(
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([float("nan"), float("inf"), -1, 0, 1, 2**63 - 1, "", "x", True]),
)
any_value = st.one_of(json_values, toml_scalars)
regexes = st.sampled_from(["", "[a-z]+", "a{4294967296}", "(", "(?P<a>x)(?P=b)", "a**", "x" * 3])


def _table(cls: type[Any], **special: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = {f.name: special.get(f.name, any_value) for f in dataclasses.fields(cls)}
    typo = st.dictionaries(st.text(min_size=1, max_size=8), any_value, max_size=1)
    table = st.fixed_dictionaries({}, optional=keys).flatmap(
        lambda base: typo.map(lambda extra: {**extra, **base})
    )
    return st.one_of(table, any_value)


good_url = st.sampled_from(
    ["http://127.0.0.1:9100", "https://h:1", "ftp://x:1", "http://h", "", "https://h:1/x?y"]
)
shard = _table(
    config.ShardConfig,
    id=st.one_of(st.sampled_from(["o0", "o1", "bad id"]), any_value),
    url=st.one_of(good_url, any_value),
    weight=st.one_of(st.integers(-2, 2**63 - 1), any_value),
)
edge_entry = _table(config.EdgeConfig, id=st.sampled_from(["e0", "e1", ""]))
namespace = _table(config.NamespaceConfig, channel_regex=st.one_of(regexes, any_value))

documents = st.fixed_dictionaries(
    {},
    optional={
        "shards": st.one_of(st.lists(shard, max_size=3), any_value),
        "edges": st.one_of(st.lists(edge_entry, max_size=2), any_value),
        "replication": any_value,
        "min_copies": any_value,
        "namespaces": st.one_of(
            st.dictionaries(st.sampled_from(["chat", "a b", "x", ""]), namespace, max_size=2),
            any_value,
        ),
        "edge": _table(config.EdgeSettings),
        "origin": _table(config.OriginSettings),
        "health": _table(config.HealthSettings),
        "auth": _table(config.AuthSettings),
        "log": _table(config.LogSettings),
        "tls": _table(config.TlsSettings),
        "token_secret": any_value,
        "api_key": any_value,
        "typo": any_value,
    },
)

GOOD = {"shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}]}


def _numbers(found: Any) -> list[float]:
    if dataclasses.is_dataclass(found) and not isinstance(found, type):
        return [n for f in dataclasses.fields(found) for n in _numbers(getattr(found, f.name))]
    if isinstance(found, tuple):
        return [n for item in found for n in _numbers(item)]
    if isinstance(found, int | float) and not isinstance(found, bool):
        return [found]
    return []


def _check(data: dict[str, Any]) -> ClusterConfig | None:
    try:
        loaded = parse_config(data, env={})
    except ConfigError as exc:
        message = str(exc)
        assert any(message.startswith(key) for key in TOP_LEVEL | set(data)), message
        return None
    for value in _numbers(loaded):
        assert math.isfinite(value), loaded
    for entry in loaded.shards:
        assert 1 <= entry.weight <= config.MAX_SHARD_WEIGHT
    for ns in loaded.namespaces.values():
        assert all(math.isfinite(v) for v in _numbers(ns))
    return loaded


@given(documents)
@example({**GOOD, "namespaces": {"x": {"channel_regex": "a{4294967296}"}}})
@example({**GOOD, "edge": {"upstream_timeout": float("nan")}})
@example({**GOOD, "health": {"interval": float("inf")}})
@example({"shards": [{"id": "o0", "url": "http://127.0.0.1:9100", "weight": 2**62}]})
def test_any_document_loads_or_names_the_key(data: dict[str, Any]) -> None:
    _check(data)


SECTIONS = {
    "edge": config.EdgeSettings,
    "origin": config.OriginSettings,
    "health": config.HealthSettings,
    "auth": config.AuthSettings,
    "log": config.LogSettings,
    "tls": config.TlsSettings,
}


@given(
    st.sampled_from(sorted(SECTIONS)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.dictionaries(
                st.sampled_from([f.name for f in dataclasses.fields(SECTIONS[name])]),
                any_value,
                min_size=1,
                max_size=3,
            ),
        )
    )
)
def test_one_bad_setting_in_a_good_document_is_named(section: tuple[str, dict[str, Any]]) -> None:
    name, table = section
    try:
        parse_config({**GOOD, name: table}, env={})
    except ConfigError as exc:
        # The key at fault comes first; a check across sections names this one too.
        assert str(exc).startswith(f"{name}.") or f" {name}." in str(exc), exc
        return
    for key, value in table.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise AssertionError(f"{name}.{key} = {value} was accepted")


@given(st.binary(max_size=200))
@example(b"\xff\xfe")
@example(b"shards = 1\nshards = 2")
def test_any_file_loads_or_fails_with_a_config_error(raw: bytes) -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=".toml", delete=False) as f:
        f.write(raw)
    try:
        load_config(f.name, env={})
    except ConfigError:
        pass
    finally:
        os.unlink(f.name)
