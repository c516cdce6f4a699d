"""Structured logs: one JSON object per line, with the component, node and ids."""

from __future__ import annotations

import json
import logging

from skyrelay.runtime.logs import JsonFormatter


def test_json_lines_carry_component_node_and_ids() -> None:
    record = logging.makeLogRecord(
        {
            "name": "skyrelay.edge.client",
            "levelname": "WARNING",
            "msg": "slow client %s cut",
            "args": ("c1",),
            "client": "c1",
            "channel": "news",
        }
    )
    line = JsonFormatter("e0").format(record)
    entry = json.loads(line)
    assert entry["component"] == "skyrelay.edge.client"
    assert entry["node"] == "e0"
    assert entry["level"] == "warning"
    assert entry["msg"] == "slow client c1 cut"
    assert (entry["client"], entry["channel"]) == ("c1", "news")
    assert entry["ts"].endswith("+00:00")
    assert "\n" not in line
