"""Multi-core edges without sockets: worker ids, restart delays, merged metrics, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from skyrelay.config import ConfigError, parse_config
from skyrelay.edge.mesh import WorkerSpec, worker_node_id, worker_socket
from skyrelay.edge.metrics import EdgeMetrics
from skyrelay.edge.metricsmerge import merge_expositions
from skyrelay.edge.workers import RestartBackoff
from skyrelay.testing.cluster import ClusterSpec

SHARDS = [{"id": "o0", "url": "http://127.0.0.1:9100"}]


def test_worker_node_ids_name_one_worker_of_this_edge() -> None:
    spec = WorkerSpec("eu.1", 0, 3, Path("/run/x"))
    assert spec.node_id == "eu.1.0" == worker_node_id("eu.1", 0)
    assert [spec.index_of(f"eu.1.{i}") for i in range(3)] == [0, 1, 2]
    for other in ("eu.1", "eu.1.3", "eu.1.01", "eu.1.-1", "eu.2.0", "eu.1.x", "", "eu"):
        assert spec.index_of(other) is None, other
    assert spec.siblings() == [1, 2]
    assert worker_socket(Path("/run/x"), 2) == Path("/run/x/w2.sock")


def test_restart_delay_doubles_up_to_the_cap_and_starts_over_after_a_long_run() -> None:
    backoff = RestartBackoff(0.5, 4.0)
    assert [backoff.after(0.1) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.after(4.0) == 0.5  # ran as long as the cap: a fresh start
    assert backoff.after(1.0) == 1.0


def _families(text: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def test_merged_metrics_label_every_sample_with_its_worker() -> None:
    first, second = EdgeMetrics(), EdgeMetrics()
    first.deliveries.inc(3)
    first.disconnects.labels(code="3001").inc()
    first.api_seconds.labels(method="publish").observe(0.01)
    second.deliveries.inc(5)
    second.connections.labels(transport="websocket").set(7)
    merged = merge_expositions(
        {
            "0": generate_latest(first.registry).decode(),
            "1": generate_latest(second.registry).decode(),
            "2": None,
        },
        "skyrelay_edge_worker_up",
    )
    families = _families(merged)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert values[("skyrelay_edge_deliveries_total", (("worker", "0"),))] == 3
    assert values[("skyrelay_edge_deliveries_total", (("worker", "1"),))] == 5
    assert values[("skyrelay_edge_connections", (("transport", "websocket"), ("worker", "1")))] == 7
    assert values[("skyrelay_edge_disconnects_total", (("code", "3001"), ("worker", "0")))] == 1
    assert (
        values[("skyrelay_edge_api_seconds_count", (("method", "publish"), ("worker", "0")))] == 1
    )
    up = {s.labels["worker"]: s.value for s in families["skyrelay_edge_worker_up"].samples}
    assert up == {"0": 1.0, "1": 1.0, "2": 0.0}
    # One header per family, whichever workers it came from.
    assert merged.count(b"# TYPE skyrelay_edge_deliveries_total counter") == 1
    assert families["skyrelay_edge_deliveries"].type == "counter"
    assert all("worker" in s.labels for f in families.values() for s in f.samples)


def test_a_garbled_exposition_counts_as_a_worker_that_did_not_answer() -> None:
    merged = merge_expositions({"0": "# TYPE x counter\nx_total{ 1\n"}, "up")
    assert b'up{worker="0"} 0.0' in merged


@pytest.mark.parametrize(
    ("edge", "key"),
    [
        ({"workers": 0}, "edge.workers: must be at least 1"),
        ({"workers": -2}, "edge.workers"),
        ({"worker_restart_delay": 0}, "edge.worker_restart_delay"),
        ({"worker_restart_delay": 60, "worker_restart_max_delay": 30}, "edge.worker_restart"),
        ({"worker_stop_timeout": "8"}, "edge.worker_stop_timeout: expected a number"),
    ],
)
def test_bad_worker_settings_name_the_key(edge: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config({"shards": SHARDS, "edge": edge}, env={})


def test_worker_defaults() -> None:
    settings = parse_config({"shards": SHARDS}, env={}).edge
    assert settings.workers == 1
    assert settings.worker_restart_delay <= settings.worker_restart_max_delay
    assert ClusterSpec().edge_workers == 1
