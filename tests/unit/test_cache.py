"""The hot cache serves only what the channel's history would: its size and its TTL."""

from __future__ import annotations

from skyrelay.config import parse_config
from skyrelay.edge.cache import TTL_MARGIN, RecentPublications, cache_window

NOW = 1_800_000_000.0


def pub(offset: int, at: float = NOW) -> dict[str, object]:
    return {"data": {}, "offset": offset, "time": int(at * 1000)}


def test_the_window_is_the_smaller_of_the_cache_and_the_history() -> None:
    config = parse_config(
        {
            "shards": [{"id": "o0", "url": "http://127.0.0.1:9000"}],
            "edge": {"hot_cache_size": 50},
            "namespaces": {
                "short": {"history_size": 2, "history_ttl": 7},
                "off": {"history_size": 0},
            },
        },
        env={},
    )
    assert cache_window(config, "short:x") == (2, 7.0)
    assert cache_window(config, "plain") == (50, 300.0)
    assert cache_window(config, "off:x")[0] == 0
    assert cache_window(config, "nowhere:x") == (0, 0.0)


def test_it_never_reaches_further_back_than_its_size() -> None:
    cache = RecentPublications(2, 60)
    for offset in range(1, 6):
        cache.append(pub(offset))
    assert cache.covers(3, 5, NOW) and cache.after(3, 10) == [pub(4), pub(5)]
    assert not cache.covers(2, 5, NOW)
    assert cache.covers(5, 5, NOW)  # nothing missed
    assert not cache.covers(6, 5, NOW)  # a position ahead of the stream


def test_publications_leave_it_before_their_history_ttl_runs_out() -> None:
    cache = RecentPublications(10, 60)
    cache.append(pub(1, NOW - 100))
    cache.append(pub(2, NOW - 30))
    assert not cache.covers(0, 2, NOW)  # offset 1 is out of history
    assert cache.covers(1, 2, NOW)
    # Within the margin of its expiry, the origin answers instead.
    assert not cache.covers(1, 2, NOW + 30 - TTL_MARGIN / 2)
    assert len(cache) == 0


def test_an_empty_cache_covers_only_the_top() -> None:
    cache = RecentPublications(0)
    cache.append(pub(1))
    assert len(cache) == 0
    assert cache.covers(1, 1, NOW) and not cache.covers(0, 1, NOW)
