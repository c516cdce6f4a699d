"""The status board's snapshot and the health transitions it lists, without sockets."""

from __future__ import annotations

from skyrelay.config import parse_config
from skyrelay.edge.app import BOARD_KEY, build_app
from skyrelay.edge.node import NODE_KEY
from skyrelay.edge.status import Rates
from skyrelay.edge.status_http import cookie_valid, session_cookie
from skyrelay.ring.health import Health, HealthSettings, HealthView

CONFIG = parse_config(
    {
        "shards": [
            {"id": "o0", "url": "http://127.0.0.1:9100"},
            {"id": "o1", "url": "http://127.0.0.1:9101", "weight": 3},
        ],
        "edges": [{"id": "e0", "port": 9000}],
        "replication": 2,
    },
    env={"SKYRELAY_TOKEN_SECRET": "s" * 32, "SKYRELAY_API_KEY": "key"},
)


def test_every_health_transition_reaches_the_watchers() -> None:
    view = HealthView(["a", "b"], HealthSettings(fall=2, rise=1))
    seen: list[tuple[str, Health]] = []
    view.watchers.append(lambda shard, state: seen.append((shard, state)))
    assert not view.probed("a", ok=False)  # one failure is not down yet
    assert view.probed("a", ok=False)
    assert view.lost("b") and not view.lost("b")  # a broken link: down at once, once
    assert view.probed("a", ok=True)
    assert seen == [("a", Health.DOWN), ("b", Health.DOWN), ("a", Health.UP)]


def test_rates_are_per_second_between_samples() -> None:
    rates = Rates()
    assert rates.update(10.0, {"out": 100.0}) == {"out": 0.0}
    assert rates.update(12.0, {"out": 300.0}) == {"out": 100.0}


def test_snapshot_shows_every_shard_with_its_origin_summary_and_events() -> None:
    app = build_app(CONFIG, "e0")
    node, board = app[NODE_KEY], app[BOARD_KEY]
    node.router.health.lost("o1")
    takeover = {"at": 5.0, "channel": "chat", "from": "o1", "term": 7}
    origins = {
        "o0": {"leading": 4, "replicas": 9, "takeovers": 1, "recent_takeovers": [takeover]},
        "o1": None,
    }
    snapshot = board.snapshot(node, 100.0, origins)
    o0, o1 = snapshot["shards"]
    assert (o0["id"], o0["health"], o0["leading"], o0["reachable"]) == ("o0", "up", 4, True)
    assert (o1["health"], o1["reachable"], o1["leading"]) == ("down", False, None)
    assert (o0["share"], o1["share"]) == (0.25, 0.75)
    assert snapshot["events"][0]["kind"] == "shard down" and snapshot["events"][0]["shard"] == "o1"
    assert snapshot["takeovers"] == [{**takeover, "shard": "o0"}]
    assert snapshot["connections"] == 0 and snapshot["by_transport"]["websocket"] == 0


def test_login_cookies_are_signed_and_expire() -> None:
    node = build_app(CONFIG, "e0")[NODE_KEY]
    cookie = session_cookie(node, 1000.0)
    assert cookie_valid(node, cookie, 1000.0)
    assert not cookie_valid(node, cookie, 1000.0 + CONFIG.edge.status_session_ttl + 1)
    expires, _, signature = cookie.partition(".")
    assert not cookie_valid(node, f"{int(expires) + 1}.{signature}", 1000.0)
    assert not cookie_valid(node, "garbage", 1000.0)


def test_an_edge_with_workers_adds_up_their_parts() -> None:
    app = build_app(CONFIG, "e0")
    node, board = app[NODE_KEY], app[BOARD_KEY]
    sibling = {
        "connections": 7,
        "by_transport": {"websocket": 5, "sse": 2},
        "subscriptions": 9,
        "channels": 3,
        "rates": {"deliveries": 10.0, "publications": 2.0, "client_publications": 0.0},
        "routed": {"o1": 3},
        "health": {"o0": "up", "o1": "down"},
        "events": [{"at": 50.0, "kind": "shard down", "shard": "o1", "detail": ""}],
    }
    snapshot = board.snapshot(node, 100.0, {"o0": None, "o1": None}, [sibling])
    assert snapshot["workers"] == 2
    assert snapshot["connections"] == 7 and snapshot["by_transport"]["sse"] == 2
    assert snapshot["rates"]["deliveries"] == 10.0
    o0, o1 = snapshot["shards"]
    assert (o0["health"], o1["health"]) == ("up", "down")  # down if any worker sees it down
    assert o1["routed_channels"] == 3
    assert snapshot["events"][0]["shard"] == "o1"
