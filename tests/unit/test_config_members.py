"""A shard's and an edge's entry: where each is reached and listens."""

from __future__ import annotations

from skyrelay.config.members import EdgeConfig, ShardConfig


def test_a_shard_is_reached_at_its_url() -> None:
    shard = ShardConfig("o1", "https://skyrelay-origin-1.skyrelay-origin:8100")
    assert (shard.host, shard.port, shard.tls) == ("skyrelay-origin-1.skyrelay-origin", 8100, True)
    assert ShardConfig("o2", "http://10.0.0.2").port == 80
    assert not ShardConfig("o2", "http://10.0.0.2").tls
    assert shard.listen_host == "" and shard.zone == ""


def test_an_edge_listens_on_loopback_by_default() -> None:
    edge = EdgeConfig("e0")
    assert (edge.host, edge.port, edge.tls_cert) == ("127.0.0.1", 8000, "")
