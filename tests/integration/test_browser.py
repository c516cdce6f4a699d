"""Headless Chromium: centrifuge-js falls back from a blocked WebSocket to HTTP streaming, and a
plain EventSource on uni_sse resumes with Last-Event-ID after its edge is killed."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from cent import AsyncClient, PublishRequest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.browser import Browser
from tests.support.helpers import channel, counted
from tests.support.jsclient import JS_DIR

pytestmark = pytest.mark.timeout(120)

FALLBACK_PAGE = """<!doctype html><html><body><h1>Skyrelay fallback</h1>
<script>
// This network blocks WebSocket: every attempt fails.
window.WebSocket = function () { throw new Error('WebSocket is blocked here'); };
</script>
<script src="/centrifuge.js"></script>
<script>
const config = __CONFIG__;
window.results = {pubs: [], transport: null, errors: []};
const client = new Centrifuge(config.endpoints, {token: config.token, emulationEndpoint: config.emulation});
client.on('connected', (ctx) => { window.results.transport = ctx.transport; });
client.on('error', (ctx) => window.results.errors.push(String(ctx.error && ctx.error.message)));
const sub = client.newSubscription(config.channel);
sub.on('subscribed', () => { window.results.subscribed = true; });
sub.on('publication', (ctx) => window.results.pubs.push(ctx.data.n));
sub.subscribe();
client.connect();
</script></body></html>"""

UNI_PAGE = """<!doctype html><html><body><h1>Skyrelay uni_sse</h1><script>
const config = __CONFIG__;
window.results = {pubs: [], opens: 0, connects: 0};
const source = new EventSource(config.url);
source.onopen = () => { window.results.opens += 1; };
source.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.connect) {
    window.results.connects += 1;
    for (const sub of Object.values(msg.connect.subs || {})) {
      for (const pub of sub.publications || []) window.results.pubs.push(pub.data.n);
    }
  } else if (msg.pub) {
    window.results.pubs.push(msg.pub.data.n);
  }
};
</script></body></html>"""


PROTOBUF_PAGE = """<!doctype html><html><body><h1>Skyrelay protobuf</h1>
<script src="/centrifuge.protobuf.js"></script>
<script>
const config = __CONFIG__;
const enc = (v) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b) => JSON.parse(new TextDecoder().decode(b));
window.results = {pubs: [], subscribed: [], transport: null, errors: []};
const client = new Centrifuge(config.endpoints, {
  token: config.token, emulationEndpoint: config.emulation, minReconnectDelay: 100,
});
client.on('connected', (ctx) => { window.results.transport = ctx.transport; });
client.on('error', (ctx) => window.results.errors.push(String(ctx.error && ctx.error.message)));
const sub = client.newSubscription(config.channel, {recoverable: true});
sub.on('subscribed', (ctx) => window.results.subscribed.push([ctx.wasRecovering, ctx.recovered]));
sub.on('publication', (ctx) => window.results.pubs.push([Number(ctx.offset), dec(ctx.data)]));
window.steps = {
  publish: async (data) => { await sub.publish(enc(data)); return true; },
  history: async () => (await sub.history({limit: 10})).publications.map(
    (p) => [Number(p.offset), dec(p.data)]),
  presence: async () => Object.values((await sub.presence()).clients).map((c) => c.user),
};
sub.subscribe();
client.connect();
</script></body></html>"""


@pytest.fixture(scope="module")
def browser_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # Compression on: Chromium offers permessage-deflate, so its WebSockets use it.
    c = start_cluster(
        tmp_path_factory.mktemp("browser"),
        origins=1,
        edges=2,
        replication=1,
        edge_toml="websocket_compression = true",
    )
    yield c
    c.stop()


@pytest.fixture
async def page_server() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Serves the test pages from their own origin (not the edge's)."""
    pages: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=pages[request.match_info["name"]], content_type="text/html")

    async def script(request: web.Request) -> web.FileResponse:
        dist = JS_DIR / "node_modules" / "centrifuge" / "dist"
        return web.FileResponse(dist / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/page/{name}", page)
    app.router.add_get("/{name:centrifuge(\\.protobuf)?\\.js}", script)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", pages
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser.launch()
    yield b
    await b.close()


async def test_centrifuge_js_in_chromium_falls_back_when_websocket_is_blocked(
    browser_cluster: LocalCluster,
    page_server: tuple[str, dict[str, str]],
    browser: Browser,
    tmp_path: Path,
) -> None:
    base, pages = page_server
    edge = browser_cluster.edge_url(0)
    ch = channel()
    config = {
        "endpoints": [
            {"transport": "websocket", "endpoint": browser_cluster.ws_url(0)},
            {"transport": "http_stream", "endpoint": f"{edge}/connection/http_stream"},
            {"transport": "sse", "endpoint": f"{edge}/connection/sse"},
        ],
        "emulation": f"{edge}/emulation",
        "token": token("browser"),
        "channel": ch,
    }
    pages["fallback"] = FALLBACK_PAGE.replace("__CONFIG__", json.dumps(config))
    await browser.goto(f"{base}/page/fallback")
    transport = await browser.wait_for(
        "window.results && window.results.subscribed && window.results.transport"
    )
    assert transport in ("http_stream", "sse")
    api = AsyncClient(f"{browser_cluster.edge_url(1)}/api", API_KEY)
    for n in range(5):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await browser.wait_for("window.results.pubs.length >= 5")
    assert await browser.evaluate("window.results.pubs") == [0, 1, 2, 3, 4]
    (tmp_path / "fallback.png").write_bytes(await browser.screenshot())
    await api._session.close()


async def test_event_source_resumes_with_last_event_id_after_its_edge_dies(
    browser_cluster: LocalCluster,
    page_server: tuple[str, dict[str, str]],
    browser: Browser,
) -> None:
    base, pages = page_server
    ch = channel()
    connect = json.dumps({"token": token("reader", channels=[ch])})
    url = f"{browser_cluster.edge_url(0)}/connection/uni_sse?cf_connect={quote(connect)}"
    pages["uni"] = UNI_PAGE.replace("__CONFIG__", json.dumps({"url": url}))
    await browser.goto(f"{base}/page/uni")
    await browser.wait_for("window.results && window.results.connects >= 1")
    api = AsyncClient(f"{browser_cluster.edge_url(1)}/api", API_KEY)
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    await browser.wait_for("window.results.pubs.length >= 3")

    browser_cluster.signal("e0", signal.SIGKILL)  # the connection drops
    browser_cluster.processes["e0"].wait(10)
    for n in range(3, 8):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    browser_cluster.restart("e0")
    await browser.wait_for("window.results.connects >= 2", timeout=30)
    await api.publish(PublishRequest(channel=ch, data={"n": 8}))
    await browser.wait_for("window.results.pubs.length >= 9")
    assert await browser.evaluate("window.results.pubs") == list(range(9))
    await api._session.close()


@pytest.mark.parametrize("transport", ["websocket", "http_stream"])
async def test_the_protobuf_build_in_chromium(
    browser_cluster: LocalCluster,
    page_server: tuple[str, dict[str, str]],
    browser: Browser,
    transport: str,
) -> None:
    base, pages = page_server
    edge = browser_cluster.edge_url(0)
    url = (
        browser_cluster.ws_url(0) if transport == "websocket" else f"{edge}/connection/{transport}"
    )
    ch = channel()
    config = {
        "endpoints": [{"transport": transport, "endpoint": url}],
        "emulation": f"{edge}/emulation",
        "token": token("pbrowser"),
        "channel": ch,
    }
    series = 'skyrelay_edge_websocket_deflate_total{format="protobuf"}'
    before = await counted(edge, series)
    pages["protobuf"] = PROTOBUF_PAGE.replace("__CONFIG__", json.dumps(config))
    await browser.goto(f"{base}/page/protobuf")
    assert await browser.wait_for("window.results && window.results.subscribed.length") == 1
    if transport == "websocket":  # Chromium asked for deflate, and got it
        assert await counted(edge, series) == before + 1
    assert await browser.evaluate("window.results.transport") == transport
    api = AsyncClient(f"{browser_cluster.edge_url(1)}/api", API_KEY)
    await api.publish(PublishRequest(channel=ch, data={"text": "naïve 日本 😀"}))
    await browser.evaluate("window.steps.publish({from: 'browser'})", await_promise=True)
    await browser.wait_for("window.results.pubs.length >= 2")
    expected = [[1, {"text": "naïve 日本 😀"}], [2, {"from": "browser"}]]
    assert await browser.evaluate("window.results.pubs") == expected
    assert await browser.evaluate("window.steps.history()", await_promise=True) == expected
    users = await browser.evaluate("window.steps.presence()", await_promise=True)
    assert users == ["pbrowser"]
    assert await browser.evaluate("window.results.errors") == []
    # The edge dies: the page reconnects once it is back and recovers what was published
    # meanwhile.
    browser_cluster.signal("e0", signal.SIGKILL)
    browser_cluster.processes["e0"].wait(10)
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    browser_cluster.restart("e0")
    await browser.wait_for("window.results.subscribed.length >= 2", timeout=30)
    assert await browser.evaluate("window.results.subscribed[1]") == [True, True]
    await browser.wait_for("window.results.pubs.length >= 5")
    assert await browser.evaluate("window.results.pubs") == [
        *expected,
        *([3 + n, {"n": n}] for n in range(3)),
    ]
    await api._session.close()
