"""Logs: JSON lines that name the client and the request, and never hold a token, the API key
or a payload."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.integration.conftest import API_KEY, start_cluster, token
from tests.support.helpers import channel
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(60)


def log_lines(path: Path) -> list[dict[str, object]]:
    """Every line of a process log, each of which must be one JSON object."""
    lines = []
    for raw in path.read_bytes().splitlines():
        if raw.startswith(b"ready http"):  # the start-up line LocalCluster waits for
            continue
        entry = orjson.loads(raw)
        assert isinstance(entry, dict)
        lines.append(entry)
    return lines


async def wait_for_line(path: Path, msg: str) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = [e for e in log_lines(path) if e.get("msg") == msg]
        if found:
            return found[-1]
        assert asyncio.get_running_loop().time() < deadline, f"no {msg!r} line in {path}"
        await asyncio.sleep(0.05)


async def test_publish_logs_ids_as_json_and_no_secret_or_payload(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    workdir = tmp_path_factory.mktemp("logs")
    cluster = start_cluster(
        workdir,
        origins=1,
        edges=1,
        replication=1,
        extra='[log]\nformat = "json"\nlevel = "DEBUG"\n',
    )
    try:
        tok = token("logged-user")
        ch = channel()
        client, reply = await connect_raw(session, cluster.ws_url(0), tok)
        client_id = reply["connect"]["client"]
        assert "subscribe" in await client.command("subscribe", {"channel": ch})
        client_secret = f"client-payload-{secrets.token_hex(8)}"
        assert "publish" in await client.command("publish", {"channel": ch, "data": client_secret})
        api_secret = f"api-payload-{secrets.token_hex(8)}"
        async with session.post(
            f"{cluster.edge_url(0)}/api/publish",
            json={"channel": ch, "data": {"text": api_secret}},
            headers={"X-API-Key": API_KEY, "X-Request-ID": "req-42"},
        ) as resp:
            assert resp.headers["X-Request-ID"] == "req-42"
            assert "result" in await resp.json()
        await client.wait_pushes(2)

        edge_log = workdir / "logs" / "e0.log"
        published = await wait_for_line(edge_log, "client publish")
        assert published["client"] == client_id and published["user"] == "logged-user"
        assert published["channel"] == ch and published["node"] == "e0"
        assert published["component"] == "skyrelay.edge.commands"
        assert {"ts", "level"} <= published.keys()
        api_line = await wait_for_line(edge_log, "api publish 200")
        assert api_line["request_id"] == "req-42" and api_line["channel"] == ch
        connected = await wait_for_line(edge_log, "client connected")
        assert connected["client"] == client_id and connected["transport"] == "websocket"
        await client.ws.close()
    finally:
        cluster.stop()
    for path in (workdir / "logs").iterdir():
        text = path.read_text()
        log_lines(path)  # every line parses
        for secret in (tok, API_KEY, client_secret, api_secret):
            assert secret not in text, f"{path.name} holds a secret or a payload"
