"""The client's state file: positions, the outbox and remembered transports."""

from __future__ import annotations

from pathlib import Path

import orjson

from skyrelay.client.store import Store


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
