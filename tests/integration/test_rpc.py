"""The rpc command is forwarded to the app's backend with the caller's identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from centrifuge import Client
from centrifuge.exceptions import ReplyError

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import start_cluster, token
from tests.support.jsclient import JsClient
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def rpc_cluster(tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []

    async def backend(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        if body["method"] == "fail":
            return web.json_response({"error": {"code": 1000, "message": "nope"}})
        return web.json_response({"result": {"data": {"echo": body["data"], "user": body["user"]}}})

    app = web.Application()
    app.router.add_post("/rpc", backend)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    cluster = await loop.run_in_executor(
        None,
        lambda: start_cluster(
            tmp_path,
            origins=1,
            edges=1,
            replication=1,
            edge_toml=f'rpc_url = "http://127.0.0.1:{port}/rpc"',
        ),
    )
    yield cluster, calls
    await loop.run_in_executor(None, cluster.stop)
    await runner.cleanup()


async def test_rpc_reaches_the_backend_with_the_user(
    rpc_cluster: tuple[LocalCluster, list[dict[str, Any]]], session: aiohttp.ClientSession
) -> None:
    cluster, calls = rpc_cluster
    client, _ = await connect_raw(session, cluster.ws_url(0), token("caller"))
    reply = await client.command("rpc", {"method": "echo", "data": {"x": 1}})
    assert reply["rpc"] == {"data": {"echo": {"x": 1}, "user": "caller"}}
    assert calls[0]["user"] == "caller" and calls[0]["method"] == "echo" and calls[0]["client"]
    failed = await client.command("rpc", {"method": "fail"})
    assert failed["error"] == {"code": 1000, "message": "nope"}
    await client.ws.close()


async def test_rpc_without_a_backend_is_not_available(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    client, _ = await connect_raw(session, cluster.ws_url(0), token())
    reply = await client.command("rpc", {"method": "x"})
    assert reply["error"]["code"] == 108
    await client.ws.close()


async def test_rpc_over_protobuf_with_both_sdks(
    rpc_cluster: tuple[LocalCluster, list[dict[str, Any]]],
) -> None:
    cluster, calls = rpc_cluster
    client = Client(cluster.ws_url(0), token=token("pbcaller"), use_protobuf=True, proxy=None)
    await client.connect()
    result = await client.rpc("echo", b'{"x":"\xc3\xbc"}')
    assert orjson.loads(result.data) == {"echo": {"x": "ü"}, "user": "pbcaller"}
    with pytest.raises(ReplyError) as failed:
        await client.rpc("fail", b"{}")
    assert (failed.value.code, failed.value.message) == (1000, "nope")
    await client.disconnect()

    js = await JsClient.start(cluster.ws_url(0), token("jscaller"), protobuf=True)
    try:
        await js.call("connect")
        await js.wait(lambda e: e["ev"] == "connected")
        answer = await js.call("rpc", method="echo", data={"from": "js"})
        assert answer["data"] == {"echo": {"from": "js"}, "user": "jscaller"}
    finally:
        await js.close()
    assert [c["user"] for c in calls] == ["pbcaller", "pbcaller", "jscaller"]
