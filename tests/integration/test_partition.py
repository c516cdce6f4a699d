"""Partitions between hosts: each shard and each edge runs in its own network namespace, and
the test cuts the veth links between them.

The primary of some channels is cut off from its replicas and from edge e0, while edge e1
still reaches it. Fencing must hold (the isolated primary acks nothing, no offset ever holds two
different publications, on any shard or subscriber), nothing acked may be lost, and once the
links are back every shard's copy and every subscriber must agree.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from skyrelay.ring import Member, Ring
from skyrelay.testing.cluster import ClusterSpec, LocalCluster
from tests.integration.conftest import API_KEY, TEST_NAMESPACES, TOKEN_SECRET, token
from tests.support.helpers import is_ready, until
from tests.support.load import Acks, Recorder, check_deliveries, publish
from tests.support.netns import Network, require_namespaces
from tests.support.wsclient import connect_raw

pytestmark = pytest.mark.timeout(120)

ORIGINS = ("o0", "o1", "o2")
EDGES = ("e0", "e1")
ORIGIN_PORT = 8100
EDGE_PORT = 8000
VICTIM = "o0"
RING = Ring([Member(o) for o in ORIGINS], 3)
# Channels the victim leads while it is healthy.
CHANNELS = [ch for ch in (f"fo:part{i}" for i in range(200)) if RING.owner(ch) == VICTIM][:4]
# Seconds to wait for start-up and for the cluster to settle.
SETTLE = 40.0


@dataclass
class Hosts:
    net: Network
    cluster: LocalCluster
    # Loopback ports in the test's namespace that reach each process.
    forwards: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.forwards[name]}"

    def ws_url(self, edge: str) -> str:
        return f"ws://127.0.0.1:{self.forwards[edge]}/connection/websocket"

    def api(self, edge: str) -> str:
        return f"{self.url(edge)}/api"


def render(net: Network) -> str:
    lines = ["replication = 3", TEST_NAMESPACES]
    for name in ORIGINS:
        address = net.hosts[name].address
        lines += ["[[shards]]", f'id = "{name}"', f'url = "http://{address}:{ORIGIN_PORT}"', ""]
    for name in EDGES:
        address = net.hosts[name].address
        lines += ["[[edges]]", f'id = "{name}"', f'host = "{address}"', f"port = {EDGE_PORT}", ""]
    return "\n".join(lines)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[Hosts]:
    require_namespaces()
    net = Network()
    cluster: LocalCluster | None = None
    try:
        prefix = net.cluster_hosts(ORIGINS, EDGES)
        cluster = LocalCluster(
            ClusterSpec(), tmp_path, TOKEN_SECRET, API_KEY, log_dir=tmp_path / "logs", prefix=prefix
        )
        cluster.config_path.write_text(render(net))
        forwards: dict[str, int] = {}
        for name in ORIGINS:
            cluster.start_process(name, ["origin", "--id", name])
            forwards[name] = (await net.forward(name, ORIGIN_PORT)).port
        for name in EDGES:
            cluster.start_process(name, ["edge", "--id", name])
            forwards[name] = (await net.forward(name, EDGE_PORT)).port
        found = Hosts(net, cluster, forwards)
        async with aiohttp.ClientSession() as session:
            for name in (*ORIGINS, *EDGES):
                check = functools.partial(ready, session, found, name)
                await eventually(check, SETTLE, f"{name} ready")
        yield found
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        await net.close()


async def ready(session: aiohttp.ClientSession, hosts: Hosts, name: str) -> bool:
    return await is_ready(session, hosts.cluster.processes[name], name, hosts.url(name))


def digest(data: Any) -> str:
    """The digest an origin's /status?channel= gives a publication's data."""
    return hashlib.blake2b(orjson.dumps(data), digest_size=8).hexdigest()


async def copy(session: aiohttp.ClientSession, hosts: Hosts, shard: str, ch: str) -> dict[str, Any]:
    async with session.get(f"{hosts.url(shard)}/status", params={"channel": ch}) as resp:
        answer: dict[str, Any] = await resp.json()
        return answer


async def subscribe_all(session: aiohttp.ClientSession, hosts: Hosts) -> dict[str, Recorder]:
    recorders = {}
    for edge in EDGES:
        client, reply = await connect_raw(session, hosts.ws_url(edge), token(f"sub-{edge}"))
        assert "connect" in reply, reply
        for ch in CHANNELS:
            answer = await client.command("subscribe", {"channel": ch})
            assert "subscribe" in answer, answer
        recorders[edge] = Recorder(client)
    return recorders


async def publish_round(
    session: aiohttp.ClientSession, hosts: Hosts, edge: str, tag: str, acks: Acks, limit: float
) -> None:
    """One publication per channel through ``edge``, each retried for ``limit`` seconds."""
    give_up = asyncio.get_running_loop().time() + limit
    await asyncio.gather(
        *(
            publish(session, hosts.api(edge), ch, {"tag": tag}, f"{ch}-{tag}", acks, give_up)
            for ch in CHANNELS
        )
    )


def merged(*sources: Acks) -> Acks:
    total = Acks()
    for source in sources:
        for ch, acked in source.acked.items():
            for offset, data in acked.items():
                mine = total.acked.setdefault(ch, {})
                assert mine.get(offset, data) == data, f"{ch}@{offset} acked twice, differently"
                mine[offset] = data
        total.other_errors += source.other_errors
    return total


def partition(net: Network) -> None:
    for other in ("o1", "o2", "e0"):
        net.cut(VICTIM, other)


def heal(net: Network) -> None:
    for other in ("o1", "o2", "e0"):
        net.heal(VICTIM, other)


async def no_conflicts(
    session: aiohttp.ClientSession, hosts: Hosts, recorders: dict[str, Recorder]
) -> dict[str, dict[str, dict[str, Any]]]:
    """No offset holds two different publications in any shard's committed history or at
    any subscriber. Returns every shard's copy of every channel."""
    copies = {ch: {s: await copy(session, hosts, s, ch) for s in ORIGINS} for ch in CHANNELS}
    for ch in CHANNELS:
        seen: dict[int, tuple[str, str]] = {}
        for shard, state in copies[ch].items():
            for offset, held in state["publications"]:
                if offset <= state["committed"]:
                    first = seen.setdefault(offset, (held, shard))
                    assert first[0] == held, f"{ch}@{offset}: {shard} and {first[1]} differ"
        for edge, recorder in recorders.items():
            for offset, data, _ in recorder.got.get(ch, []):
                first = seen.setdefault(offset, (digest(data), edge))
                assert first[0] == digest(data), f"{ch}@{offset}: {edge} and {first[1]} differ"
    return copies


async def test_a_partitioned_primary_is_fenced_and_loses_nothing_acked(hosts: Hosts) -> None:
    async with aiohttp.ClientSession() as session:
        recorders = await subscribe_all(session, hosts)
        before = Acks()
        for edge in EDGES:
            await publish_round(session, hosts, edge, f"before-{edge}", before, SETTLE)
        assert all(len(before.acked.get(ch, {})) == 2 for ch in CHANNELS)
        top = {ch: max(before.acked[ch]) for ch in CHANNELS}

        partition(hosts.net)
        through_e0, through_e1 = Acks(), Acks()
        # Edge e1 still reaches the old primary; e0 fails over to a replica.
        cut_off = asyncio.gather(
            *(
                publish_round(session, hosts, "e1", f"isolated-{n}", through_e1, 3.0)
                for n in range(3)
            )
        )
        for n in range(5):
            await publish_round(session, hosts, "e0", f"majority-{n}", through_e0, SETTLE)
        await cut_off
        assert all(len(through_e0.acked.get(ch, {})) == 5 for ch in CHANNELS)

        # The isolated primary cannot reach min_copies: it acked nothing.
        assert through_e1.acked == {}
        assert through_e1.temporary_errors > 0 and through_e1.other_errors == []
        acks = merged(before, through_e0)
        e0 = recorders["e0"]
        await until(lambda: e0.has_all(acks), SETTLE, "deliveries at e0")
        check_deliveries(e0, acks)  # nothing acked lost, in order, exactly once
        assert e0.unsubscribed == []
        copies = await no_conflicts(session, hosts, recorders)
        for ch in CHANNELS:
            # Behind the partition, e1's subscribers saw nothing the old primary could not
            # commit, and it committed nothing new.
            assert recorders["e1"].offsets(ch) == list(range(1, top[ch] + 1))
            assert copies[ch][VICTIM]["committed"] == top[ch]
            # A majority holds everything acked.
            held = {s: dict(map(tuple, copies[ch][s]["publications"])) for s in ORIGINS}
            for offset, data in acks.acked[ch].items():
                holders = [s for s in ORIGINS if held[s].get(offset) == digest(data)]
                assert len(holders) >= 2, f"{ch}@{offset} held by {holders} only"
        for recorder in recorders.values():
            await recorder.close()


async def test_a_healed_partition_converges(hosts: Hosts) -> None:
    async with aiohttp.ClientSession() as session:
        recorders = await subscribe_all(session, hosts)
        acks = Acks()
        await publish_round(session, hosts, "e1", "before", acks, SETTLE)
        partition(hosts.net)
        lost = Acks()  # attempts through the isolated primary, not acked
        isolated = publish_round(session, hosts, "e1", "isolated", lost, 3.0)
        for n in range(3):
            await publish_round(session, hosts, "e0", f"majority-{n}", acks, SETTLE)
        await isolated
        # Heal one side first: e0 reaches the old primary again, which still reaches no
        # replica and so does not know it was deposed. e0 moves its channels back to it, as
        # their preferred shard: the old primary must not answer from its stale copy.
        hosts.net.heal(VICTIM, "e0")
        e0 = recorders["e0"]

        async def stale_copy_refused() -> bool:
            if e0.unsubscribed:
                return True  # answered from the stale copy: subscribers told to recover
            roles = [(await copy(session, hosts, VICTIM, ch))["role"] for ch in CHANNELS]
            return "leader" not in roles

        await eventually(stale_copy_refused, SETTLE, "the old primary to stand down")
        assert e0.unsubscribed == []
        heal(hosts.net)
        for n in range(3):
            for edge in EDGES:
                await publish_round(session, hosts, edge, f"after-{edge}-{n}", acks, SETTLE)
        acks = merged(acks, lost)
        assert all(len(acks.acked[ch]) >= 1 + 3 + 6 for ch in CHANNELS)

        def caught_up() -> bool:
            return all(r.has_all(acks) for r in recorders.values())

        await until(caught_up, SETTLE, "every subscriber")

        last: dict[str, Any] = {}

        async def converged() -> bool:
            for ch in CHANNELS:
                states = [await copy(session, hosts, s, ch) for s in ORIGINS]
                last[ch] = states
                # Followers learn the commit point with the next append, so only what they
                # hold is compared; the leader has committed all of it.
                keys = ("epoch", "top", "publications")
                views = {tuple(orjson.dumps(state[k]) for k in keys) for state in states}
                leaders = [s for s in states if s["role"] == "leader"]
                if len(views) != 1 or len(leaders) != 1:
                    return False
                if leaders[0]["committed"] != leaders[0]["top"]:
                    return False
            return True

        try:
            await eventually(converged, SETTLE, "every shard's copy to agree")
        except AssertionError:
            for ch, states in last.items():
                for state in states:
                    print(ch, {k: v for k, v in state.items() if k != "publications"})
                    print("   ", state["publications"][-12:])
            raise

        await no_conflicts(session, hosts, recorders)
        for edge, recorder in recorders.items():
            check_deliveries(recorder, acks)
            assert recorder.unsubscribed == [], edge
            assert recorder.client.close_code is None
        for ch in CHANNELS:
            state = await copy(session, hosts, "o1", ch)
            history = {offset: held for offset, held in state["publications"]}
            assert history == {o: digest(d) for o, d, _ in recorders["e0"].got[ch]}
            assert set(acks.acked[ch]) <= set(history)
        for recorder in recorders.values():
            await recorder.close()
