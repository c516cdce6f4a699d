"""A shard's copies on its storage: the leader's own copy counts once it is written, and the
copies load back as they were."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from skyrelay.config import parse_config
from skyrelay.origin.persistence import load_copies
from skyrelay.origin.storage.store import ShardStore
from tests.support.helpers import until
from tests.support.shards import FakeEdge, call, new_shard

QUICK = parse_config(
    {
        "shards": [{"id": "o0", "url": "http://127.0.0.1:9100"}],
        "replication": 1,
        "origin": {"replication_timeout": 0.2},
    },
    env={},
)


def open_store(path: Path) -> ShardStore:
    return ShardStore(path, fsync=False, segment_bytes=1 << 20)


async def test_copies_load_back_with_their_epoch_and_go_on(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    shard, api = new_shard(store), FakeEdge("api")
    first = [(await call(shard, api, op="pub", ch="chat", data=n))["result"] for n in range(3)]
    await store.close()
    again = open_store(tmp_path)
    restarted = new_shard(again)
    channels, damaged = load_copies(again, restarted.config, restarted.replicator.replica)
    assert channels == ["chat"] and not damaged
    rep = restarted.replicator.replica("chat")
    assert rep.stream is not None and rep.stream.top == 3 and not rep.is_leader
    after = (await call(restarted, api, op="pub", ch="chat", data=3))["result"]
    assert (after["epoch"], after["offset"]) == (first[0]["epoch"], 4)
    history = (await call(restarted, api, op="history", ch="chat", limit=-1))["result"]
    assert [p["data"] for p in history["publications"]] == [0, 1, 2, 3]
    await again.close()


async def test_nothing_is_acked_that_the_disk_did_not_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    shard, api = new_shard(store, QUICK), FakeEdge("api")
    assert (await call(shard, api, op="pub", ch="chat", data="kept"))["result"]["offset"] == 1
    real_append = store.log.append

    def full(_: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.log, "append", full)
    refused = await call(shard, api, op="pub", ch="chat", data="lost", ikey="k")
    assert refused["error"]["temporary"] and store.failing is not None
    rep = shard.replicator.replica("chat")
    assert rep.stream is not None and rep.stream.committed == 1
    monkeypatch.setattr(store.log, "append", real_append)  # space is back
    await until(lambda: store.failing is None, what="the store to write again by itself")
    retried = await call(shard, api, op="pub", ch="chat", data="lost", ikey="k")
    assert retried["result"]["offset"] == 2 and store.failing is None
    await store.close()
    loaded = open_store(tmp_path).load(lambda _: 100, lambda _: 300.0, time.time())
    assert [p["data"] for p in loaded.images["chat"].pubs] == ["kept", "lost"]
