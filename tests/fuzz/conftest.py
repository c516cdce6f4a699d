"""Hypothesis profiles for the property-based fuzz tests.

``bounded`` (the default, what ``make test`` runs) keeps every test to a few dozen examples so
the whole directory runs in seconds; in CI it is derandomized, so a run is repeatable.
``fuzz`` (``make fuzz``) runs thousands of examples per test and keeps the failures it finds in
the example database, so the next run tries them first.

The deadline is a hang guard, not a speed test: it is far above what any example takes.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

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
    max_examples=3000,
    deadline=HANG_GUARD,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get(PROFILE_ENV, "bounded"))
