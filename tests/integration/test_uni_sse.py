"""/connection/uni_sse: a plain SSE reader receives publications and resumes with
Last-Event-ID after its connection drops, with no gap and no duplicate."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
from cent import AsyncClient, PublishRequest

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import token
from tests.support.helpers import channel


class SseReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def event(self) -> dict[str, Any]:
        """The next event with data (comments and retry lines skipped)."""
        data: list[str] = []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise ConnectionError("stream ended")
            line = raw.decode().rstrip("\r\n")
            if line.startswith("id: "):
                self.last_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                event: dict[str, Any] = json.loads("\n".join(data))
                return event


async def open_stream(
    session: aiohttp.ClientSession, cluster: LocalCluster, tok: str, last_id: str | None = None
) -> SseReader:
    url = f"{cluster.edge_url(0)}/connection/uni_sse?cf_connect={quote(json.dumps({'token': tok}))}"
    headers = {"Last-Event-ID": last_id} if last_id else {}
    response = await session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=30))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return SseReader(response)


async def test_uni_sse_receives_and_resumes_with_last_event_id(
    cluster: LocalCluster, api: AsyncClient, session: aiohttp.ClientSession
) -> None:
    ch = channel()
    tok = token("viewer", channels=[ch])
    reader = await open_stream(session, cluster, tok)
    connect = await reader.event()
    assert connect["connect"]["subs"][ch]["recoverable"] is True
    assert "pong" not in connect["connect"]
    for n in range(3):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))
    got = [await reader.event() for _ in range(3)]
    assert [(e["channel"], e["pub"]["offset"], e["pub"]["data"]) for e in got] == [
        (ch, n + 1, {"n": n}) for n in range(3)
    ]
    last_id = reader.last_id
    assert last_id is not None

    reader.response.close()  # the network drops
    for n in range(3, 7):
        await api.publish(PublishRequest(channel=ch, data={"n": n}))

    resumed = await open_stream(session, cluster, tok, last_id)
    connect = await resumed.event()
    sub = connect["connect"]["subs"][ch]
    assert sub["recovered"] is True
    assert [p["data"] for p in sub["publications"]] == [{"n": n} for n in range(3, 7)]
    await api.publish(PublishRequest(channel=ch, data={"n": 7}))
    live = await resumed.event()
    assert (live["pub"]["offset"], live["pub"]["data"]) == (8, {"n": 7})
    resumed.response.close()


async def test_uni_sse_refuses_a_bad_token_with_a_disconnect_event(
    cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    reader = await open_stream(session, cluster, "not-a-token")
    event = await reader.event()
    assert event == {"disconnect": {"code": 3500, "reason": "invalid token"}}
    reader.response.close()
