"""The docker compose deployment (compose/), checked without a Docker engine.

The compose file is validated against the Compose Specification schema; every path it mounts or
builds from exists; promtool checks Prometheus' config, the alert rules and their unit tests;
HAProxy checks its config; the dashboard and the alerts name only metrics the servers export;
and the cluster config, the compose services, the scrape targets and the load balancer agree on
who listens where. promtool and haproxy are Debian packages: without them these checks skip
locally and fail in CI (CI=true), which installs them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from skyrelay.config import (
    API_KEY_ENV,
    LINK_SECRET_ENV,
    TOKEN_SECRET_ENV,
    ClusterConfig,
    load_config,
)

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
PROMETHEUS = COMPOSE / "prometheus"
DASHBOARDS = COMPOSE / "grafana" / "dashboards"
SECRETS = {TOKEN_SECRET_ENV: "compose-test-token-secret", API_KEY_ENV: "compose-test-api-key"}

# Runbook sections of docs/operations.md that the alerts link to.
RUNBOOKS = {
    "shard-down",
    "edge-down",
    "replication-lag",
    "publish-errors",
    "slow-clients",
    "connection-limit",
    "events-backlog",
}
# Series Prometheus itself adds to every target.
PROMETHEUS_SERIES = {"up"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def config() -> ClusterConfig:
    return load_config(COMPOSE / "skyrelay.toml", env=SECRETS)


def require_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"needs {name} (Debian's {package} package; CI installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


# --- metric names --------------------------------------------------------------------------

_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)(?:MetricFamily)?\(\s*\"(skyrelay_[a-z0-9_]+)\""
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def exposed(name: str, kind: str) -> set[str]:
    """Series names a metric of this type shows in the exposition."""
    base = name.removesuffix("_total") if kind == "counter" else name
    return {base + suffix for suffix in _SUFFIXES[kind]}


def code_metrics() -> dict[str, str]:
    """Metrics the servers define, by type, read from their source."""
    found: dict[str, str] = {}
    for package in ("edge", "origin", "skyrelay"):
        for path in (ROOT / package).glob("*.py"):
            for kind, name in _DEFINITION.findall(path.read_text()):
                found[name] = kind.lower()
    return found


def known_series() -> set[str]:
    known = set(PROMETHEUS_SERIES)
    for name, kind in code_metrics().items():
        known |= exposed(name, kind)
    return known


_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, keywords, labels or durations)."""
    bare = _STRINGS.sub('""', expr)
    bare = _MATCHERS.sub("", bare)
    bare = _RANGES.sub("", bare)
    bare = _GROUPING.sub("", bare)
    return {
        word for word, call in _WORD.findall(bare) if not call and word.lower() not in _KEYWORDS
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (code) (rate(a_total{code="3008"}[5m])) > 1', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[$__rate_interval])))", {"b_bucket"}),
        ('label_replace(up{job="x"}, "shard", "$1", "instance", "(.*)") == 0', {"up"}),
        ("sum(c) / (sum(d offset 5m) + 1e-9) > 0.9 * sum by (i) (e > 0)", {"c", "d", "e"}),
        ("max by (instance) (f) > bool 100 unless on (instance) g", {"f", "g"}),
    ],
)
def test_promql_metric_names_are_found(expr: str, names: set[str]) -> None:
    assert promql_metrics(expr) == names


def test_metric_scan_finds_the_servers_metrics() -> None:
    found = code_metrics()
    assert found["skyrelay_edge_deliveries"] == "counter"
    assert found["skyrelay_edge_api_seconds"] == "histogram"
    assert found["skyrelay_edge_shard_up"] == "gauge"
    assert found["skyrelay_origin_takeovers"] == "counter"
    assert found["skyrelay_edge_connection_limit"] == "gauge"
    assert found["skyrelay_origin_publish_seconds"] == "histogram"
    series = known_series()
    assert "skyrelay_edge_channel_moves_total" in series
    assert "skyrelay_edge_api_seconds_bucket" in series


# --- dashboards and alerts -----------------------------------------------------------------


def dashboard_panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            yield path.name, panel
            for inner in panel.get("panels", []):
                yield path.name, inner


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_dashboard_queries_name_only_metrics_the_servers_export() -> None:
    known = known_series()
    datasources = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources}
    unknown, queries = [], 0
    for name, panel in dashboard_panels():
        for target in panel.get("targets", []):
            queries += 1
            assert target["datasource"]["uid"] in uids, f"{name}: {panel['title']}"
            unknown += [
                f"{name}: {panel['title']}: {metric}"
                for metric in sorted(promql_metrics(target["expr"]) - known)
            ]
    assert queries > 0
    assert not unknown, "queries name metrics no server exports:\n" + "\n".join(unknown)


def test_dashboard_shows_what_operators_need() -> None:
    exprs = [t["expr"] for _, p in dashboard_panels() for t in p.get("targets", [])]
    shown = set().union(*(promql_metrics(e) for e in exprs))
    needed = {
        "skyrelay_edge_connections",
        "skyrelay_edge_deliveries_total",
        "skyrelay_origin_publications_total",
        "skyrelay_origin_replication_lag",
        "skyrelay_origin_followers_in_sync",
        "skyrelay_edge_shard_up",
        "skyrelay_edge_channel_moves_total",
        "skyrelay_origin_takeovers_total",
        "skyrelay_edge_disconnects_total",
        "skyrelay_edge_command_errors_total",
        "skyrelay_edge_link_reconnects_total",
    }
    assert needed <= shown, f"not on the dashboard: {sorted(needed - shown)}"
    assert any("by (transport)" in e for e in exprs if "skyrelay_edge_connections" in e)
    for histogram in ("skyrelay_origin_publish_seconds", "skyrelay_edge_deliver_latency_seconds"):
        for quantile in ("0.5", "0.99"):
            assert any(
                e.startswith(f"histogram_quantile({quantile},") and f"{histogram}_bucket" in e
                for e in exprs
            ), f"no p{quantile} of {histogram}"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for _, panel in dashboard_panels():
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_alert_rules_name_only_metrics_the_servers_export() -> None:
    known = known_series()
    for rule in alert_rules():
        assert promql_metrics(rule["expr"]) <= known, rule["alert"]


def test_alerts_carry_for_severity_summary_and_runbook() -> None:
    rules = alert_rules()
    anchors = set()
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        match = re.fullmatch(r"docs/operations\.md#([a-z-]+)", notes["runbook_url"])
        assert match and match[1] in RUNBOOKS, f"{name}: runbook {notes['runbook_url']}"
        anchors.add(match[1])
    assert anchors == RUNBOOKS
    exprs = " ".join(rule["expr"] for rule in rules)
    assert 'up{job="skyrelay-origin"}' in exprs
    assert 'skyrelay_edge_disconnects_total{code="3008"}' in exprs
    for metric in (
        "skyrelay_edge_shard_up",
        "skyrelay_origin_replication_lag",
        "skyrelay_origin_publish_errors_total",
        "skyrelay_edge_command_errors_total",
        "skyrelay_edge_connection_limit",
        "skyrelay_origin_events_backlog",
        "skyrelay_origin_events_lost_total",
    ):
        assert metric in exprs, f"no alert on {metric}"


def heading_anchors(markdown: str) -> set[str]:
    """Anchors a Markdown renderer gives the headings, plus explicit ones."""
    anchors = set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", markdown))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_runbook_links_reach_sections_of_the_operations_guide() -> None:
    guide = ROOT / "docs" / "operations.md"
    missing = RUNBOOKS - heading_anchors(guide.read_text())
    assert not missing, f"docs/operations.md has no section for {sorted(missing)}"


# --- the compose file ----------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = run([*check, str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator must see a mistake: a misspelt service key fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("hostname: origin1", "hostnme: origin1"))
    result = run([*check, str(broken)])
    assert result.returncode != 0
    assert "hostnme" in result.stdout + result.stderr


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volume sources by target path, short or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        found[target] = source
    return found


def test_every_mounted_or_built_path_exists() -> None:
    data = compose()
    named = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        for source in mounts(service).values():
            if source.startswith((".", "/")):
                assert (COMPOSE / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build is None:
            continue
        context = (COMPOSE / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        for line in dockerfile.read_text().splitlines():
            words = shlex.split(line) if line.startswith(("COPY ", "ADD ")) else []
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                assert (context / source).exists(), f"{dockerfile.name}: no {source}"


def skyrelay_services() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Services running a Skyrelay process: name -> (role, id, service)."""
    found = {}
    for name, service in services().items():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] in ("origin", "edge"):
            args = dict(zip(command[1::2], command[2::2], strict=False))
            found[name] = (command[0], args["--id"], service)
            assert mounts(service)[args["--config"]] == "./skyrelay.toml", name
    return found


def test_cluster_config_loads_with_the_secrets_from_the_environment() -> None:
    loaded = config()
    assert (loaded.token_secret, loaded.api_key) == (
        SECRETS[TOKEN_SECRET_ENV],
        SECRETS[API_KEY_ENV],
    )
    bare = load_config(COMPOSE / "skyrelay.toml", env={})
    assert not bare.token_secret and not bare.api_key, "secrets belong in the environment"
    assert len(loaded.shards) == 3 and len(loaded.edges) == 2
    assert loaded.log.format == "json"
    assert all(edge.host == "0.0.0.0" for edge in loaded.edges)


def test_every_shard_and_edge_has_its_service() -> None:
    loaded = config()
    running = skyrelay_services()
    origins = {ident: name for name, (role, ident, _) in running.items() if role == "origin"}
    edges = {ident: name for name, (role, ident, _) in running.items() if role == "edge"}
    assert set(origins) == {s.id for s in loaded.shards}
    assert set(edges) == {e.id for e in loaded.edges}
    for shard in loaded.shards:
        service = services()[origins[shard.id]]
        # The shard binds the address its url names: the service's own name.
        assert urlsplit(shard.url).hostname == origins[shard.id], shard.url
        assert str(shard.port) in service["expose"], shard.id
        assert f"{shard.url}/ready" in service["healthcheck"]["test"], shard.id
    for edge in loaded.edges:
        service = services()[edges[edge.id]]
        assert str(edge.port) in service["expose"], edge.id
        assert f"http://127.0.0.1:{edge.port}/ready" in service["healthcheck"]["test"]


def test_secrets_come_from_the_environment_and_fail_loudly() -> None:
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?[^}]+\}", text))
    assert {TOKEN_SECRET_ENV, API_KEY_ENV, LINK_SECRET_ENV} <= required
    for name, (_, _, service) in skyrelay_services().items():
        for variable in (TOKEN_SECRET_ENV, API_KEY_ENV, LINK_SECRET_ENV):
            assert service["environment"][variable].startswith(f"${{{variable}:?"), name
    example = (COMPOSE / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert required <= listed, f".env.example lacks {sorted(required - listed)}"
    assert ".env" in (COMPOSE / ".gitignore").read_text().split()


def service_port(target: str) -> tuple[str, str]:
    host, _, port = target.rpartition(":")
    assert host in services(), f"{target}: no compose service {host}"
    assert port in services()[host].get("expose", []), f"{target}: {host} exposes no {port}"
    return host, port


def test_prometheus_scrapes_every_process_where_it_listens() -> None:
    loaded = config()
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: {t for group in job["static_configs"] for t in group["targets"]}
        for job in prometheus["scrape_configs"]
    }
    for targets in jobs.values():
        for target in targets:
            service_port(target)
    assert jobs["skyrelay-origin"] == {f"{urlsplit(s.url).netloc}" for s in loaded.shards}
    by_id = {ident: name for name, (_, ident, _) in skyrelay_services().items()}
    assert jobs["skyrelay-edge"] == {f"{by_id[e.id]}:{e.port}" for e in loaded.edges}
    for manager in prometheus["alerting"]["alertmanagers"]:
        for group in manager["static_configs"]:
            for target in group["targets"]:
                service_port(target)


def test_load_balancer_reaches_every_edge() -> None:
    loaded = config()
    by_id = {ident: name for name, (_, ident, _) in skyrelay_services().items()}
    text = (COMPOSE / "haproxy" / "haproxy.cfg").read_text()
    servers = set(re.findall(r"^\s*server\s+\S+\s+(\S+)", text, flags=re.MULTILINE))
    assert servers == {f"{by_id[e.id]}:{e.port}" for e in loaded.edges}
    for server in servers:
        service_port(server)
    assert "timeout tunnel" in text and "option forwardfor" in text
    assert "uri /ready" in text


def test_grafana_reads_the_provisioned_folders() -> None:
    targets = {source: target for target, source in mounts(services()["grafana"]).items()}
    providers = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/dashboards/skyrelay.yml").read_text()
    )["providers"]
    assert {p["options"]["path"] for p in providers} == {targets["./grafana/dashboards"]}
    assert targets["./grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    service_port(urlsplit(source["url"]).netloc)


# --- the tools' own checks -----------------------------------------------------------------


def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = run([promtool, *args], cwd=PROMETHEUS)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_haproxy_accepts_its_config() -> None:
    haproxy = require_tool("haproxy", "haproxy")
    result = run([haproxy, "-c", "-f", str(COMPOSE / "haproxy" / "haproxy.cfg")])
    assert result.returncode == 0, result.stdout + result.stderr
    # Service names resolve only inside the compose network; any other warning is a mistake.
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "[WARNING]" in line and "could not resolve address" not in line
    ]
    assert not warnings, "\n".join(warnings)
