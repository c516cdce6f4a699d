"""One exposition for a process group: the Prometheus text of every worker, each sample labelled
with the worker it came from. Pure code.

Each worker keeps its own registry (its collectors read live state at scrape time, which the
multiprocess mode of prometheus_client cannot do), so the group's view is assembled per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# The label that names the worker a sample came from.
WORKER_LABEL = "worker"


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_expositions(parts: Mapping[str, str | None], up_metric: str) -> bytes:
    """Merge expositions by worker (None: the worker did not answer) into one text.

    Samples of one family from every worker end up under one HELP/TYPE header, labelled
    ``worker``; ``up_metric`` tells which workers answered (1) or not (0)."""
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily(
        up_metric, "Workers of this edge that answered the scrape (1 up)", labels=[WORKER_LABEL]
    )
    for worker, text in parts.items():
        parsed = _parse(text) if text is not None else None
        up.add_metric([worker], 0.0 if parsed is None else 1.0)
        for family in parsed or ():
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples += [
                Sample(s.name, {**s.labels, WORKER_LABEL: worker}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([up, *families.values()]))
    return generate_latest(registry)


def _parse(text: str) -> list[Metric] | None:
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:  # a garbled answer counts as no answer
        return None
