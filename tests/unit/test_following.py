"""The follower side of replication: claims, appends and installs from another shard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skyrelay.origin import following
from skyrelay.origin.storage.store import ShardStore
from tests.support.shards import FakeEdge, call, new_shard


async def test_an_amnesiac_shard_says_so_when_it_grants_a_claim() -> None:
    shard = new_shard()
    shard.replicator.joined_running = True
    peer = FakeEdge("o9")
    answer = following.on_peer(
        shard.replicator, "claim", {"ch": "chat", "term": 10**13, "from": "o9"}
    )
    assert answer["granted"] and answer["amnesiac"]
    await call(shard, peer, op="pub", ch="other", data=1)  # a channel it leads and holds
    other = following.on_peer(
        shard.replicator, "claim", {"ch": "other", "term": 10**14, "from": "o9"}
    )
    assert other["granted"] and "amnesiac" not in other


def open_store(path: Path) -> ShardStore:
    return ShardStore(path, fsync=False, segment_bytes=1 << 20)


def install(term: int, top: int) -> dict[str, Any]:
    pubs = [{"offset": n, "data": n, "time": int(time.time() * 1000)} for n in range(1, top + 1)]
    state = {"epoch": "e7", "top": top, "committed": top, "pubs": pubs}
    return {"id": 1, "op": "install", "ch": "chat", "term": term, "from": "o9", "state": state}


async def test_what_a_follower_acknowledges_is_on_its_disk(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    shard = new_shard(store)
    message = install(10**13, 2)
    answer = following.on_peer(shard.replicator, "install", message)
    marker = shard.durable_marker(message)
    assert answer["ok"] and marker > store.resolved  # the link holds the answer until then
    pub = {"offset": 3, "data": 3, "time": int(time.time() * 1000)}
    append = {"ch": "chat", "term": 10**13, "from": "o9", "prev": 2, "pubs": [pub], "commit": 3}
    assert following.on_peer(shard.replicator, "append", append)["ok"]
    await store.close()
    copies = open_store(tmp_path).load(lambda _: 100, lambda _: 300.0, time.time())
    image = copies.images["chat"]
    assert (image.epoch, image.top, image.accepted_term) == ("e7", 3, 10**13)


async def test_an_unsure_copy_counts_as_forgotten_until_its_leader_syncs_it() -> None:
    shard = new_shard()
    replicator = shard.replicator
    following.on_peer(replicator, "install", install(10**13, 1))
    replicator.remembers, replicator.joined_running = True, True
    assert not replicator.amnesiac(replicator.replica("chat"))
    replicator.unsure.add("chat")  # loaded from a damaged log
    claim = {"ch": "chat", "term": 10**13 + 1, "from": "o8"}
    assert following.on_peer(replicator, "claim", claim)["amnesiac"]
    following.on_peer(replicator, "install", install(10**13 + 2, 1))
    assert "chat" not in replicator.unsure
    assert not replicator.amnesiac(replicator.replica("chat"))
