"""PostgreSQL for the tests: the server (``skyrelay.testing.postgres``), skipped locally where it
is not installed and required in CI (``.ci/run`` installs it)."""

from __future__ import annotations

import os

import pytest

from skyrelay.testing.postgres import Postgres, server_bin


def postgres() -> Postgres:
    if server_bin() is None:
        message = "needs PostgreSQL (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Postgres()
