"""One exposition for a process group, from each worker's own."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from skyrelay.edge.metricsmerge import WORKER_LABEL, merge_expositions

WORKER_TEXT = """# HELP skyrelay_edge_connections Client connections open
# TYPE skyrelay_edge_connections gauge
skyrelay_edge_connections{transport="websocket"} %d
"""


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_every_sample_is_labelled_with_its_worker_under_one_header() -> None:
    merged = merge_expositions({"0": WORKER_TEXT % 3, "1": WORKER_TEXT % 4}, "skyrelay_worker_up")
    got = samples(merged)
    for worker, value in (("0", 3), ("1", 4)):
        key = (
            "skyrelay_edge_connections",
            (("transport", "websocket"), (WORKER_LABEL, worker)),
        )
        assert got[key] == value
        assert got[("skyrelay_worker_up", ((WORKER_LABEL, worker),))] == 1
    assert merged.count(b"# TYPE skyrelay_edge_connections gauge") == 1


def test_a_silent_or_garbled_worker_is_down_and_the_others_still_count() -> None:
    merged = merge_expositions(
        {"0": WORKER_TEXT % 3, "1": None, "2": "not { an exposition"}, "skyrelay_worker_up"
    )
    got = samples(merged)
    assert [got[("skyrelay_worker_up", ((WORKER_LABEL, w),))] for w in "012"] == [1, 0, 0]
    assert sum(1 for name, _ in got if name == "skyrelay_edge_connections") == 1
