"""The client's pure parts: backoff, edge ranking, sealing, the state file, CLI parsing."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import orjson
import pytest

from skyrelay.client.backoff import backoff_delay
from skyrelay.client.cli import parse_since
from skyrelay.client.crypto import Keyring, key_from_text, key_to_text, new_key
from skyrelay.client.edges import EdgeRanking, edge_base
from skyrelay.client.errors import DecryptionError
from skyrelay.client.store import Store


def flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    assert backoff_delay(0, 0.5, 20, lambda lo, hi: hi) == 0.5
    assert backoff_delay(3, 0.5, 20, lambda lo, hi: hi) == 4.0
    assert backoff_delay(50, 0.5, 20, lambda lo, hi: hi) == 20.0
    assert backoff_delay(3, 0.5, 20, lambda lo, hi: lo) == 0.0
    rng = random.Random(7)
    draws = [backoff_delay(0, 1.0, 20, rng.uniform) for _ in range(1000)]
    assert 0 <= min(draws) < 0.05 and 0.95 < max(draws) <= 1.0


def test_edge_urls_are_normalised() -> None:
    assert edge_base("ws://h:1/connection/websocket") == "http://h:1"
    assert edge_base("wss://h/connection/websocket") == "https://h"
    assert edge_base("http://h:1/") == "http://h:1"
    assert edge_base("h:1") == "http://h:1"


def test_ranking_prefers_fast_then_known_then_configured_and_cools_failures() -> None:
    ranking = EdgeRanking(["http://a", "http://b", "http://c"], cooldown=30)
    assert ranking.order(0) == ["http://a", "http://b", "http://c"]
    ranking.record_probe("http://a", None)
    ranking.record_probe("http://b", 0.050)
    ranking.record_probe("http://c", 0.010)
    assert ranking.order(0) == ["http://c", "http://b", "http://a"]
    ranking.record_failure("http://c", now=100)
    assert ranking.order(110) == ["http://b", "http://a", "http://c"]
    assert ranking.order(131) == ["http://c", "http://b", "http://a"]


def test_a_much_faster_edge_is_worth_moving_to() -> None:
    ranking = EdgeRanking(["http://a", "http://b"], cooldown=30)
    ranking.record_probe("http://a", 0.200)
    ranking.record_probe("http://b", 0.020)
    assert ranking.better_than("http://a", gain=0.05) == "http://b"
    assert ranking.better_than("http://a", gain=0.5) is None
    assert ranking.better_than("http://a", gain=0) is None
    assert ranking.better_than("http://b", gain=0.05) is None


def test_sealed_data_opens_with_any_known_key_and_never_leaks() -> None:
    k1, k2 = new_key(), new_key()
    writer, reader, stale = Keyring(), Keyring(), Keyring()
    for ring in (writer, reader, stale):
        ring.add("chat", "k1", k1)
    writer.add("chat", "k2", k2)
    reader.add("chat", "k2", k2)
    old = Keyring()
    old.add("chat", "k1", k1)
    first = old.seal("chat", {"t": "secret"})
    second = writer.seal("chat", {"t": "secret"})
    assert second["kid"] == "k2" and b"secret" not in orjson.dumps(second)
    assert reader.open("chat", first) == {"t": "secret"}
    assert reader.open("chat", second) == {"t": "secret"}
    with pytest.raises(DecryptionError, match="no key for this key id"):
        stale.open("chat", second)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda env: {**env, "c": flip(env["c"])}, "wrong key or tampered"),
        (lambda env: {**env, "n": "!!"}, "malformed envelope"),
        (lambda env: {**env, "kid": 3}, "without a key id"),
    ],
)
def test_bad_envelopes_are_typed_errors(mangle: object, reason: str) -> None:
    ring = Keyring()
    ring.add("chat", "k", new_key())
    envelope = ring.seal("chat", [1, 2])
    with pytest.raises(DecryptionError, match=reason):
        ring.open("chat", mangle(envelope))  # type: ignore[operator]


def test_ciphertext_is_bound_to_its_channel_and_plaintext_is_refused_where_sealed() -> None:
    key = new_key()
    ring = Keyring()
    ring.add("a", "k", key)
    ring.add("b", "k", key)
    with pytest.raises(DecryptionError, match="tampered"):
        ring.open("b", ring.seal("a", 1))
    with pytest.raises(DecryptionError, match="plaintext"):
        ring.open("a", {"text": "hi"})
    assert Keyring().open("other", {"text": "hi"}) == {"text": "hi"}
    assert key_from_text(key_to_text(key)) == key
    with pytest.raises(ValueError, match="32 bytes"):
        key_from_text("c2hvcnQ")


def test_the_state_file_keeps_positions_outbox_order_and_transport(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save_positions({"a": ("e", 3), "b": ("f", 1)})
    store.save_positions({"a": ("e", 4)})
    seqs = [store.enqueue("a", orjson.dumps(n), f"k{n}", 0.0) for n in range(3)]
    store.remember_transport("wifi", "http_stream", 5.0)
    store.close()
    again = Store(path)
    assert again.positions() == {"a": ("e", 4), "b": ("f", 1)}
    assert [q.key for q in again.queued()] == ["k0", "k1", "k2"]
    again.sent(seqs[0])
    assert [q.data for q in again.queued()] == [b"1", b"2"]
    assert again.queued_count() == 2
    assert again.transport("wifi") == ("http_stream", 5.0)
    assert again.transport("cellular") is None
    again.close()


def test_since_parses_offsets_and_positions() -> None:
    assert parse_since(None) is None
    assert parse_since("0") == 0
    assert parse_since("ab12:7") == ("ab12", 7)
    with pytest.raises(ValueError, match="EPOCH:OFFSET"):
        parse_since("x")
