"""Hypothesis profiles for the property-based fuzz tests.

``bounded`` (the default, what ``make test`` runs) keeps every test to a few dozen examples so
the whole directory runs in seconds; in CI it is derandomized, so a run is repeatable.
``fuzz`` (``make fuzz``) runs thousands of examples per test and keeps the failures it finds in
the example database, so the next run tries them first.

The deadline is a hang guard, not a speed test: it is far above what any example takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.edgehost import EdgeHost

PROFILE_ENV = "SKYRELAY_FUZZ_PROFILE"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HANG_GUARD = timedelta(seconds=5)

settings.register_profile(
    "bounded",
    max_examples=40,
    deadline=HANG_GUARD,
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=HANG_GUARD,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get(PROFILE_ENV, "bounded"))


@pytest.fixture(scope="session")
def edge_host() -> Iterator[EdgeHost]:
    """One in-process edge and shard for every fuzz test that needs a server."""
    host = EdgeHost().start()
    yield host
    host.stop()
