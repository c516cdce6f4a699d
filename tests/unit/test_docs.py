"""Every setting the loader accepts is documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from skyrelay import config

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def test_every_setting_is_in_the_configuration_reference() -> None:
    sections = (
        config.ShardConfig,
        config.EdgeConfig,
        config.NamespaceConfig,
        config.EdgeSettings,
        config.OriginSettings,
        config.HealthSettings,
        config.AuthSettings,
        config.LogSettings,
        config.TlsSettings,
        config.ProxyConfig,
        config.PgOutboxConfig,
        config.EventsConfig,
    )
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in sections
        for f in dataclasses.fields(cls)
        if f"| `{f.name}` |" not in DOC
    ]
    assert not missing, f"undocumented settings: {missing}"
