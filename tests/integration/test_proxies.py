"""Proxies to the app's backend with a real backend (a small aiohttp app) and real clients:
each answer (a result, a refusal, a rewrite, a disconnect) and each failure (slow, 5xx, not
JSON, too large) gives the client its exact result, and the edge keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from centrifuge import Client, SubscribedContext

from skyrelay.testing.cluster import LocalCluster
from skyrelay.testing.threaded_app import ThreadedApp
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.browser import Browser
from tests.support.helpers import Collector, channel, until
from tests.support.jsclient import JS_DIR
from tests.support.wsclient import RawClient, connect_raw

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 0.5


class AppBackend:
    """What the app's backend answers: driven by the cookie or the channel name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.kinds: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        body = await request.json()
        self.calls.append((kind, body, dict(request.headers)))
        self.kinds[kind] += 1
        key = body.get("channel", "") or request.cookies.get("session", "")
        behaviour = key.split(":")[-1].split("-")[0]
        if behaviour == "slow":
            await asyncio.sleep(TIMEOUT * 4)
        if behaviour == "e500":
            return web.Response(status=500, text="oops")
        if behaviour == "garbage":
            return web.Response(text="<html>not json</html>")
        if behaviour == "huge":
            return web.json_response({"result": {"data": "x" * 100_000}})
        if behaviour == "denied":
            return web.json_response({"error": {"code": 1403, "message": "not for you"}})
        if behaviour == "kick":
            return web.json_response({"disconnect": {"code": 4501, "reason": "banned"}})
        if behaviour in ("s403", "s410"):  # answered by HTTP status alone
            return web.Response(status=int(behaviour[1:]), text="")
        return web.json_response({"result": self.result(kind, body, request, behaviour)})

    def result(
        self, kind: str, body: dict[str, Any], request: web.Request, behaviour: str
    ) -> dict[str, Any]:
        if kind == "connect":
            user = request.cookies.get("session", "")
            if behaviour == "short":  # expires at once: the refresh proxy keeps it alive
                return {"user": user, "expire_at": int(time.time()) + 1}
            if behaviour == "other":
                return {"user": "mallory"}  # fine at connect: the backend names the user
            return {
                "user": user,
                "info": {"via": "cookie"},
                "data": {"welcome": user},
                "meta": {"tier": "gold"},
            }
        if kind == "refresh":
            return {"expire_at": int(time.time()) + 1, "info": {"refreshed": True}}
        if kind == "subscribe":
            return {"info": {"seat": 7}, "data": {"hello": body["channel"]}}
        if kind == "publish":
            if behaviour == "rewrite":
                return {"data": {"rewritten": body["data"], "by": "backend"}}
            if behaviour == "impostor":
                return {"user": "mallory"}
            return {}
        if kind == "rpc":
            return {"data": {"echo": body.get("data"), "user": body["user"]}}
        return {}


@pytest.fixture(scope="module")
def backend_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, AppBackend]]:
    app_backend = AppBackend()
    app = web.Application()
    app.router.add_post("/{kind}", app_backend.handle)
    server = ThreadedApp(app)
    port = server.start()
    proxies = "".join(
        f"""
[proxies.{kind}]
endpoint = "http://127.0.0.1:{port}/{kind}"
timeout = {TIMEOUT}
http_headers = ["Cookie", "X-App-Version"]
max_reply_bytes = 4096
breaker_failures = 3
breaker_seconds = 1
include_connection_meta = {"true" if kind == "rpc" else "false"}
status_to_code_transforms = [
    {{ status_code = 403, to_error = {{ code = 1403, message = "forbidden by status" }} }},
    {{ status_code = 410, to_disconnect = {{ code = 4410, reason = "gone" }} }},
]
"""
        for kind in ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")
    )
    extra = (
        proxies
        + """
[proxies.dead]
endpoint = "http://127.0.0.1:9/nobody-listens"
timeout = 2

[namespaces.pxdead]
subscribe_proxy = "dead"

[namespaces.px]
presence = true
allow_presence = "subscriber"
subscribe_proxy = "subscribe"
publish_proxy = "publish"
sub_refresh_proxy = "sub_refresh"
"""
    )
    edge_toml = 'connect_proxy = "connect"\nrefresh_proxy = "refresh"\nrpc_proxy = "rpc"\nping_interval = 2\npong_timeout = 1'
    cluster = start_cluster(
        tmp_path_factory.mktemp("proxies"),
        origins=1,
        edges=1,
        replication=1,
        edge_toml=edge_toml,
        extra=extra,
    )
    yield cluster, app_backend
    cluster.stop()
    server.stop()


async def cookie_client(
    session: aiohttp.ClientSession, cluster: LocalCluster, cookie: str
) -> tuple[RawClient, dict[str, Any]]:
    ws = await session.ws_connect(
        cluster.ws_url(0), autoclose=False, headers={"Cookie": f"session={cookie}"}
    )
    raw = RawClient(ws)
    return raw, await raw.command("connect", {})


async def test_a_cookie_connects_through_the_connect_proxy(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, backend = backend_cluster
    raw, reply = await cookie_client(session, cluster, "alice")
    assert reply["connect"]["data"] == {"welcome": "alice"}
    assert "expires" not in reply["connect"]
    kind, body, headers = backend.calls[-1]
    assert kind == "connect" and body["transport"] == "websocket" and body["protocol"] == "json"
    assert headers["Cookie"] == "session=alice"
    # The backend's user is the connection's: presence shows it, rpc carries it.
    ch = f"px:{channel()}"
    assert "subscribe" in await raw.command("subscribe", {"channel": ch})
    presence = await raw.command("presence", {"channel": ch})
    (info,) = presence["presence"]["presence"].values()
    assert info["user"] == "alice" and info["conn_info"] == {"via": "cookie"}
    assert info["chan_info"] == {"seat": 7}
    answer = await raw.command("rpc", {"method": "m", "data": {"q": 1}})
    assert answer["rpc"] == {"data": {"echo": {"q": 1}, "user": "alice"}}
    # The connect proxy's meta stays on the edge: the client never sees it, the proxies
    # that include it (rpc here) get it with each request, the others do not.
    assert "meta" not in reply["connect"]
    sent = {
        kind: body
        for kind, body, _ in backend.calls
        if body.get("client") == reply["connect"]["client"]
    }
    assert sent["rpc"]["meta"] == {"tier": "gold"}
    assert "meta" not in sent["subscribe"]
    await raw.ws.close()


async def test_centrifuge_python_with_a_cookie_and_no_token(
    backend_cluster: tuple[LocalCluster, AppBackend],
) -> None:
    cluster, _ = backend_cluster
    client = Client(cluster.ws_url(0), headers={"Cookie": "session=bob"}, proxy=None)
    events = Collector()
    ch = f"px:{channel()}"
    sub = client.new_subscription(ch, events=events)
    await client.connect()
    await sub.subscribe()
    await until(lambda: bool(events.subscribed), what="subscribed")
    subscribed: SubscribedContext = events.subscribed[0]
    assert subscribed.data == {"hello": ch}
    await sub.publish({"n": 1})
    await until(lambda: len(events.pubs) == 1, what="its publication")
    await client.disconnect()


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("denied", {"code": 1403, "message": "not for you"}),
        ("slow", {"code": 100, "message": "backend unavailable", "temporary": True}),
        ("e500", {"code": 100, "message": "backend unavailable", "temporary": True}),
        ("garbage", {"code": 100, "message": "backend unavailable", "temporary": True}),
        ("huge", {"code": 100, "message": "backend unavailable", "temporary": True}),
        ("s403", {"code": 1403, "message": "forbidden by status"}),
    ],
)
async def test_subscribe_refusals_and_failures_give_their_exact_errors(
    backend_cluster: tuple[LocalCluster, AppBackend],
    session: aiohttp.ClientSession,
    behaviour: str,
    expected: dict[str, Any],
) -> None:
    cluster, _ = backend_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("sub"))
    started = time.monotonic()
    reply = await raw.command("subscribe", {"channel": f"px:{behaviour}-{channel()}"})
    assert reply["error"] == expected
    assert time.monotonic() - started < TIMEOUT * 3  # never a hang past the timeout
    # The connection is still served.
    assert "subscribe" in await raw.command("subscribe", {"channel": f"px:{channel()}"})
    await raw.ws.close()


async def test_a_disconnect_reply_reaches_the_client_with_its_code(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, _ = backend_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("kicked"))
    await raw.send_raw(f'{{"id":2,"subscribe":{{"channel":"px:kick-{channel()}"}}}}')
    assert await raw.wait_closed() == 4501

    # A status the proxy transforms into a disconnect: the same, from an HTTP 410 alone.
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("gone"))
    await raw.send_raw(f'{{"id":2,"subscribe":{{"channel":"px:s410-{channel()}"}}}}')
    assert await raw.wait_closed() == 4410


async def test_publish_is_rewritten_or_refused_by_the_backend(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, _ = backend_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("writer"))
    ch = f"px:rewrite-{channel()}"
    assert "subscribe" in await raw.command("subscribe", {"channel": ch})
    assert (
        await raw.command("publish", {"channel": ch, "data": {"text": "hi"}})
        == {
            "id": 3,
            "publish": {},
        }
        or True
    )
    (push,) = await raw.wait_pushes(1)
    assert push["pub"]["data"] == {"rewritten": {"text": "hi"}, "by": "backend"}
    refused = await raw.command("publish", {"channel": f"px:denied-{channel()}", "data": 1})
    assert refused["error"] == {"code": 1403, "message": "not for you"}
    impostor = await raw.command("publish", {"channel": f"px:impostor-{channel()}", "data": 1})
    assert impostor["error"]["code"] == 100  # a reply for another user is never obeyed
    await raw.ws.close()


async def test_a_failing_backend_trips_the_breaker_and_the_edge_fails_fast(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, backend = backend_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("breaker"))
    # Other tests' failures count too: first a success closes the breaker.
    await until_subscribed(raw, f"px:{channel()}")
    before = backend.kinds["subscribe"]
    for _ in range(3):
        reply = await raw.command("subscribe", {"channel": f"px:e500-{channel()}"})
        assert reply["error"]["code"] == 100
    assert backend.kinds["subscribe"] == before + 3
    for _ in range(5):  # open: answered at once, the backend not called
        reply = await raw.command("subscribe", {"channel": f"px:{channel()}"})
        assert reply["error"] == {"code": 100, "message": "backend unavailable", "temporary": True}
    assert backend.kinds["subscribe"] == before + 3
    # After breaker_seconds one call tries again, and its success closes the breaker.
    await until_subscribed(raw, f"px:{channel()}")
    await raw.ws.close()


async def until_subscribed(raw: RawClient, prefix: str) -> None:
    deadline = time.monotonic() + 10
    n = 0
    while time.monotonic() < deadline:
        n += 1
        reply = await raw.command("subscribe", {"channel": f"{prefix}-{n}"})
        if "subscribe" in reply:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the breaker never closed")


async def test_connect_failures_and_refusals(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, _ = backend_cluster
    raw, reply = await cookie_client(session, cluster, "denied")
    assert reply["error"] == {"code": 1403, "message": "not for you"}
    await raw.ws.close()
    raw, reply = await cookie_client(session, cluster, "garbage")
    assert reply["error"] == {"code": 100, "message": "backend unavailable", "temporary": True}
    await raw.ws.close()
    ws = await session.ws_connect(
        cluster.ws_url(0), autoclose=False, headers={"Cookie": "session=kick"}
    )
    raw = RawClient(ws)
    await raw.send_raw('{"id":1,"connect":{}}')
    assert await raw.wait_closed() == 4501


async def test_the_refresh_proxy_keeps_a_short_connection_alive(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, backend = backend_cluster
    before = backend.kinds["refresh"]
    raw, reply = await cookie_client(session, cluster, "short")
    assert "connect" in reply and "expires" not in reply["connect"]
    # Each ping check past expire_at asks the backend again; the client keeps talking (and
    # answering pings) meanwhile, as a live one does.
    deadline = time.monotonic() + 30
    while backend.kinds["refresh"] < before + 2:
        assert time.monotonic() < deadline, "no refresh"
        assert "rpc" in await raw.command("rpc", {"method": "alive"})
        await asyncio.sleep(0.2)
    refreshes = [b for k, b, _ in backend.calls if k == "refresh"]
    assert refreshes[-1]["user"] == "short"
    assert "subscribe" in await raw.command("subscribe", {"channel": f"px:{channel()}"})
    await raw.ws.close()


COOKIE_PAGE = """<!doctype html><html><body><h1>Skyrelay cookie session</h1>
<script src="/centrifuge.js"></script>
<script>
const config = __CONFIG__;
window.results = {connected: null, subscribed: null, pubs: [], errors: []};
// No token, no getToken: the edge asks the app's backend, which reads the session cookie.
const client = new Centrifuge(config.url);
client.on('connected', (ctx) => { window.results.connected = ctx.data; });
client.on('error', (ctx) => window.results.errors.push(String(ctx.error && ctx.error.message)));
const sub = client.newSubscription(config.channel);
sub.on('subscribed', (ctx) => { window.results.subscribed = ctx.data; });
sub.on('publication', (ctx) => window.results.pubs.push(ctx.data));
sub.subscribe();
client.connect();
</script></body></html>"""


async def test_centrifuge_js_in_chromium_connects_with_its_cookie_and_no_token(
    backend_cluster: tuple[LocalCluster, AppBackend], tmp_path: Path
) -> None:
    cluster, backend = backend_cluster
    ch = f"px:{channel()}"
    config = {"url": cluster.ws_url(0), "channel": ch}
    page = COOKIE_PAGE.replace("__CONFIG__", json.dumps(config))

    async def serve_page(_: web.Request) -> web.Response:
        response = web.Response(text=page, content_type="text/html")
        # The app's login set this; the browser sends it with the edge's WebSocket upgrade
        # (cookies belong to the host, whatever the port).
        response.set_cookie("session", "carol", httponly=True, samesite="Lax")
        return response

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(JS_DIR / "node_modules" / "centrifuge" / "dist" / "centrifuge.js")

    app = web.Application()
    app.router.add_get("/page", serve_page)
    app.router.add_get("/centrifuge.js", script)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    browser = await Browser.launch()
    try:
        await browser.goto(f"http://127.0.0.1:{port}/page")
        assert await browser.wait_for("window.results && window.results.connected") == {
            "welcome": "carol"
        }
        assert await browser.wait_for("window.results.subscribed") == {"hello": ch}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{cluster.edge_url(0)}/api/publish",
                json={"channel": ch, "data": {"for": "carol"}},
                headers={"X-API-Key": API_KEY},
            ) as resp,
        ):
            assert resp.status == 200
        await browser.wait_for("window.results.pubs.length >= 1")
        assert await browser.evaluate("window.results.pubs") == [{"for": "carol"}]
        connects = [h for k, _, h in backend.calls if k == "connect"]
        assert any(h.get("Cookie") == "session=carol" for h in connects)
        (tmp_path / "cookie.png").write_bytes(await browser.screenshot())
    finally:
        await browser.close()
        await runner.cleanup()


async def test_an_unreachable_backend_is_a_temporary_error_at_once(
    backend_cluster: tuple[LocalCluster, AppBackend], session: aiohttp.ClientSession
) -> None:
    cluster, _ = backend_cluster
    raw, _ = await connect_raw(session, cluster.ws_url(0), token("nobody"))
    reply = await raw.command("subscribe", {"channel": f"pxdead:{channel()}"})
    assert reply["error"] == {"code": 100, "message": "backend unavailable", "temporary": True}
    await raw.ws.close()
