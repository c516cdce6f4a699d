"""The Kubernetes manifests (compose/kubernetes): each overlay renders with `kubectl kustomize`
and agrees with itself and with the code: the config the ConfigMap carries loads, its shards
are the StatefulSet's pods by ordinal at the headless Service's names and the container's
port, probes are on the paths that mean ready and alive, the PDB allows one shard down,
the data volume holds data_dir, the grace period covers the handover, the secrets referenced
are the ones the docs list, the HPA's metric is in a running edge's /metrics and the rules
are the compose deployment's."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from skyrelay.config import API_KEY_ENV, LINK_SECRET_ENV, TOKEN_SECRET_ENV, parse_config
from skyrelay.config.settings import ClusterConfig
from skyrelay.ring import Ring
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.integration.test_compose import known_series, promql_metrics, require_tool
from tests.support.wsclient import connect_raw

ROOT = Path(__file__).parents[2]
KUBE = ROOT / "compose" / "kubernetes"
OVERLAYS = ("base", "overlays/dev", "overlays/production", "overlays/zones")
SECRETS = {TOKEN_SECRET_ENV: "t", API_KEY_ENV: "a", LINK_SECRET_ENV: "l"}
# The keys of the skyrelay-secrets Secret, and the variables they fill.
SECRET_KEYS = {
    "token-secret": TOKEN_SECRET_ENV,
    "api-key": API_KEY_ENV,
    "link-secret": LINK_SECRET_ENV,
}
_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered(overlay: str) -> list[dict[str, Any]]:
    if overlay not in _RENDERED:
        kubectl = require_tool("kubectl", "kubernetes-client")
        done = subprocess.run(
            [kubectl, "kustomize", str(KUBE / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        _RENDERED[overlay] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return _RENDERED[overlay]


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    for doc in rendered(overlay):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{overlay}: no {kind} {name}")


def config_of(overlay: str) -> ClusterConfig:
    text = find(overlay, "ConfigMap", "skyrelay-config")["data"]["skyrelay.toml"]
    return parse_config(tomllib.loads(text), env=SECRETS)


def origin_sets(overlay: str) -> list[dict[str, Any]]:
    """The origins' StatefulSets: one, or one per zone."""
    found = [
        d
        for d in rendered(overlay)
        if d["kind"] == "StatefulSet"
        and d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        == "skyrelay-origin"
    ]
    assert found, f"{overlay}: no origin StatefulSet"
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def port_of(c: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in c["ports"] if p["name"] == name)


def selects(selector: dict[str, Any], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shards_are_the_statefulsets_pods_by_ordinal(overlay: str) -> None:
    config = config_of(overlay)
    service = find(overlay, "Service", "skyrelay-origin")
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    expected: list[str] = []
    for origins in origin_sets(overlay):
        name = origins["metadata"]["name"]
        assert origins["spec"]["serviceName"] == "skyrelay-origin"
        assert selects({"matchLabels": service["spec"]["selector"]}, origins)
        c = container(origins)
        port = port_of(c, "link")
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert c["args"][-2] == "--id" and c["args"][-1].endswith("$(POD_INDEX)")
        prefix = c["args"][-1].removesuffix("$(POD_INDEX)")
        index = next(e for e in c["env"] if e["name"] == "POD_INDEX")
        assert index["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['apps.kubernetes.io/pod-index']"
        )
        zone = origins["spec"]["template"]["spec"].get("nodeSelector", {})
        for i in range(origins["spec"]["replicas"]):
            shard = config.shard(f"{prefix}{i}")
            expected.append(shard.id)
            url = urlsplit(shard.url)
            assert url.hostname == f"{name}-{i}.skyrelay-origin", shard.url
            assert shard.port == port and shard.listen_host == "0.0.0.0"
            assert shard.zone == zone.get("topology.kubernetes.io/zone", ""), shard.id
    assert sorted(s.id for s in config.shards) == sorted(expected)
    assert config.config_watch_interval > 0  # a ConfigMap change applies without restarts
    edge = container(find(overlay, "Deployment", "skyrelay-edge"))
    assert edge["args"][-2:] == ["--name", "$(POD_NAME)"]  # each pod known by its name
    name_env = next(e for e in edge["env"] if e["name"] == "POD_NAME")
    assert name_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_zones_overlay_puts_a_copy_of_every_channel_in_every_zone() -> None:
    config = config_of("overlays/zones")
    ring = Ring.of_shards(config.shards, config.replication)
    zone_of = ring.zones()
    assert len(set(zone_of.values())) == 3
    for i in range(10_000):
        assert len({zone_of[m] for m in ring.replicas(f"channel-{i}")}) == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_pdb_volume_and_grace(overlay: str) -> None:
    config = config_of(overlay)
    (origins, *_) = origin_sets(overlay)
    edges = find(overlay, "Deployment", "skyrelay-edge")
    workloads = [(o, "link", config.shards[0].port) for o in origin_sets(overlay)]
    for workload, port_name, port in [*workloads, (edges, "client", config.edges[0].port)]:
        c = container(workload)
        assert port_of(c, port_name) == port
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port_name}
        assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": port_name}
    pdb = find(overlay, "PodDisruptionBudget", "skyrelay-origin")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert all(selects(pdb["spec"]["selector"], o) for o in origin_sets(overlay))
    (claim,) = origins["spec"]["volumeClaimTemplates"]
    mount = next(
        m for m in container(origins)["volumeMounts"] if m["name"] == claim["metadata"]["name"]
    )
    assert Path(config.origin.data_dir).is_relative_to(mount["mountPath"])
    grace = origins["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= config.origin.handover_timeout + 10
    edge_grace = edges["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container(edges)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert edge_grace >= pre_stop + 10
    anti = origins["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti  # spread over nodes (required, or preferred on one-node dev clusters)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secrets_are_mounted_and_documented(overlay: str) -> None:
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for workload in [*origin_sets(overlay), find(overlay, "Deployment", "skyrelay-edge")]:
        c = container(workload)
        assert "/etc/skyrelay/skyrelay.toml" in c["args"]
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/skyrelay")
        assert volumes[mount["name"]]["configMap"]["name"] == "skyrelay-config"
        for env in c["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == "skyrelay-secrets"
                assert SECRET_KEYS[ref["key"]] == env["name"]
                assert f"`{ref['key']}`" in docs
    config = config_of(overlay)
    tls_files = [s.tls_cert for s in config.shards] + [config.tls.ca]
    if any(tls_files):
        cert = find(overlay, "Certificate", "skyrelay-tls")["spec"]
        assert "client auth" in cert["usages"] and "server auth" in cert["usages"]
        for shard in config.shards:
            assert any(fnmatch.fnmatch(shard.host, n) for n in cert["dnsNames"]), shard.host
        (origins, *_) = origin_sets(overlay)
        volumes = origins["spec"]["template"]["spec"]["volumes"]
        secret = next(v for v in volumes if "secret" in v)
        assert secret["secret"]["secretName"] == cert["secretName"]
        mount = next(m for m in container(origins)["volumeMounts"] if m["name"] == secret["name"])
        for path in tls_files:
            assert Path(path).is_relative_to(mount["mountPath"]), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clients_reach_edges_and_only_the_cluster_reaches_origins(overlay: str) -> None:
    edges = find(overlay, "Deployment", "skyrelay-edge")
    plain = find(overlay, "Service", "skyrelay-edge")
    sticky = find(overlay, "Service", "skyrelay-edge-emulation")
    assert "sessionAffinity" not in plain["spec"]
    assert sticky["spec"]["sessionAffinity"] == "ClientIP"
    policy = find(overlay, "NetworkPolicy", "skyrelay-origin")
    (origins, *_) = origin_sets(overlay)
    assert all(selects(policy["spec"]["podSelector"], o) for o in origin_sets(overlay))
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["link"]
    peers = rule["from"][0]["podSelector"]["matchLabels"]
    assert selects({"matchLabels": peers}, edges) and selects({"matchLabels": peers}, origins)
    for doc in rendered(overlay):
        if doc["kind"] != "Ingress":
            continue
        for http in (r["http"] for r in doc["spec"]["rules"]):
            for path in http["paths"]:
                emulation = path["path"] in (
                    "/connection/http_stream",
                    "/connection/sse",
                    "/emulation",
                )
                wanted = "skyrelay-edge-emulation" if emulation else "skyrelay-edge"
                assert path["backend"]["service"]["name"] == wanted, path


def test_rules_and_dashboard_are_the_compose_deployments() -> None:
    rule = find("base", "PrometheusRule", "skyrelay")
    alerts = yaml.safe_load((ROOT / "compose" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    known = known_series()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert promql_metrics(r["expr"]) <= known, r["alert"]
    board = find("base", "ConfigMap", "skyrelay-grafana-dashboard")["data"]["skyrelay.json"]
    compose_board = ROOT / "compose" / "grafana" / "dashboards" / "skyrelay.json"
    assert json.loads(board) == json.loads(compose_board.read_text())


async def test_the_autoscalers_metric_is_in_an_edges_metrics(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    hpa = find("base", "HorizontalPodAutoscaler", "skyrelay-edge")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "skyrelay-edge"
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert names
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("hpa"))
    async with session.get(f"{cluster.edge_url(0)}/metrics") as response:
        exposition = await response.text()
    await raw.ws.close()
    series = {
        line.split("{")[0].split(" ")[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    for name in names:
        assert name in series, name
