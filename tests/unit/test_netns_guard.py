"""Namespace tests skip with the reason where namespaces are unavailable, and fail in CI."""

from __future__ import annotations

import pytest

from tests.support import netns


def test_unavailable_namespaces_skip_locally_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netns, "unavailable", lambda: "network namespace tests need root")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        netns.require_namespaces()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"need root.*CI=true"):
        netns.require_namespaces()


def test_available_namespaces_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "unavailable", lambda: None)
    monkeypatch.setenv("CI", "true")
    netns.require_namespaces()
