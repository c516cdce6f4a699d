"""Publishers that retry with idempotency keys, and subscribers that record every delivery:
the bookkeeping of the failover tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, token
from tests.support.wsclient import RawClient, connect_raw

# Seconds a history read may keep meeting temporary errors (a leader being elected).
HISTORY_PATIENCE = 20.0


@dataclass
class Acks:
    # channel -> offset -> data of every acknowledged publication
    acked: dict[str, dict[int, Any]] = field(default_factory=dict)
    temporary_errors: int = 0
    other_errors: list[Any] = field(default_factory=list)


async def publish(
    session: aiohttp.ClientSession,
    api_url: str,
    channel: str,
    data: Any,
    key: str,
    acks: Acks,
    give_up_at: float,
) -> dict[str, Any] | None:
    """Publish until acked or ``give_up_at`` (loop time), retrying temporary errors."""
    loop = asyncio.get_running_loop()
    body = {"channel": channel, "data": data, "idempotency_key": key}
    while loop.time() < give_up_at:
        try:
            async with session.post(
                f"{api_url}/publish",
                data=orjson.dumps(body),
                headers={"X-API-Key": API_KEY},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                answer = await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            acks.temporary_errors += 1
            await asyncio.sleep(0.05)
            continue
        if "result" in answer:
            result: dict[str, Any] = answer["result"]
            acks.acked.setdefault(channel, {})[result["offset"]] = data
            return result
        error = answer.get("error", {})
        if not error.get("temporary"):
            acks.other_errors.append(answer)
            return None
        acks.temporary_errors += 1
        await asyncio.sleep(0.05)
    return None


class Recorder:
    """Reads a raw client's pushes into (channel, offset, data, arrival time)."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.got: dict[str, list[tuple[int, Any, float]]] = {}
        self.unsubscribed: list[Any] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = len(self.client.pushes)
            if not await self.client._read_one():
                return
            for push in self.client.pushes[before:]:
                if "pub" in push:
                    pub = push["pub"]
                    self.got.setdefault(push["channel"], []).append(
                        (pub.get("offset", 0), pub.get("data"), time.monotonic())
                    )
                elif "unsubscribe" in push:
                    self.unsubscribed.append(push)

    def offsets(self, channel: str) -> list[int]:
        return [offset for offset, _, _ in self.got.get(channel, [])]

    def has_all(self, acks: Acks) -> bool:
        for channel, acked in acks.acked.items():
            have = set(self.offsets(channel))
            if not set(acked) <= have:
                return False
        return True

    async def close(self) -> None:
        self._task.cancel()
        await self.client.ws.close()


def check_deliveries(recorder: Recorder, acks: Acks) -> None:
    """Every acked publication arrived exactly once, in offset order, with its data."""
    for channel, acked in acks.acked.items():
        got = recorder.got.get(channel, [])
        offsets = [offset for offset, _, _ in got]
        assert offsets == list(range(1, len(offsets) + 1)), f"{channel}: gap or duplicate"
        by_offset = {offset: data for offset, data, _ in got}
        for offset, data in acked.items():
            assert by_offset.get(offset) == data, (
                f"{channel}@{offset}: {by_offset.get(offset)} != {data}"
            )


async def history(session: aiohttp.ClientSession, api_url: str, channel: str) -> dict[str, Any]:
    """The whole history of ``channel``, page by page (the API caps one page)."""
    pubs: list[dict[str, Any]] = []
    since: dict[str, Any] | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HISTORY_PATIENCE
    while True:
        body: dict[str, Any] = {"channel": channel, "limit": 300}
        if since is not None:
            body["since"] = since
        async with session.post(
            f"{api_url}/history", data=orjson.dumps(body), headers={"X-API-Key": API_KEY}
        ) as resp:
            answer: dict[str, Any] = await resp.json()
        if "result" not in answer:
            # A shard just restarted may still be taking the lead: temporary errors only.
            assert answer.get("error", {}).get("temporary"), answer
            assert loop.time() < deadline, f"history of {channel} unavailable: {answer}"
            await asyncio.sleep(0.05)
            continue
        page: dict[str, Any] = answer["result"]
        pubs += page.get("publications", [])
        if not page.get("publications") or pubs[-1]["offset"] >= page["offset"]:
            return {"epoch": page["epoch"], "offset": page["offset"], "publications": pubs}
        since = {"offset": pubs[-1]["offset"], "epoch": page["epoch"]}


async def subscribed_recorders(
    session: aiohttp.ClientSession, cluster: LocalCluster, channels: list[str]
) -> list[Recorder]:
    """A raw client on each of the first two edges, subscribed (recoverable) to ``channels``."""
    recorders = []
    for edge in (0, 1):
        client, _ = await connect_raw(session, cluster.ws_url(edge), token(f"sub{edge}"))
        for ch in channels:
            reply = await client.command("subscribe", {"channel": ch, "recoverable": True})
            assert "subscribe" in reply, reply
        recorders.append(Recorder(client))
    return recorders


def publish_steadily(
    session: aiohttp.ClientSession,
    cluster: LocalCluster,
    channels: list[str],
    acks: Acks,
    epochs: dict[str, set[str]],
    *,
    stop: asyncio.Event,
    give_up: float,
    pause: float,
    context: str = "",
) -> list[asyncio.Future[None]]:
    """One publisher per channel, through the first two edges in turn, publishing ``{"n": n}``
    with idempotency keys every ``pause`` seconds until ``stop``; each ack's epoch goes into
    ``epochs``. A publication not acked by ``give_up`` (loop time) fails its task."""

    async def publisher(ch: str, edge: int) -> None:
        api = f"{cluster.edge_url(edge)}/api"
        n = 0
        while not stop.is_set():
            result = await publish(session, api, ch, {"n": n}, f"{ch}-{n}", acks, give_up)
            assert result is not None, f"{context}{acks.other_errors}"
            epochs[ch].add(result["epoch"])
            n += 1
            await asyncio.sleep(pause)

    return [asyncio.ensure_future(publisher(ch, i % 2)) for i, ch in enumerate(channels)]
