"""Shared input generators: JSON values as a decoder returns them, and near-miss shapes."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# orjson encodes integers within 64 bits; a decoder hands out nothing else.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)

json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(max_size=10), json_values, max_size=5
)


def near(value: Any) -> st.SearchStrategy[Any]:
    """``value`` itself, or something of the wrong type or range in its place."""
    return st.one_of(st.just(value), json_values)


def fields(**known: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of the ``known`` fields (each right or wrong) and maybe extras."""
    return st.fixed_dictionaries({}, optional=known).flatmap(
        lambda base: json_objects.map(lambda extra: {**extra, **base})
    )


channel_names = st.one_of(
    st.sampled_from(["news", "chat:room", "$private", "slug:ok", "nope:x", "", "a" * 300]),
    st.text(max_size=12),
    st.text(alphabet="/.\\:\x00\n\r\t$%", max_size=6),
)
