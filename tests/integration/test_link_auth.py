"""Links between processes, authenticated by the link secret's challenge (TLS off): a process
without the secret, with a wrong one, or replaying an answer is refused before any request is
read, and logged; the shard proves itself back; a rotation of the secret under traffic, in its
three steps with shards restarted between them, drops nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from skyrelay.link import wire
from skyrelay.link.auth import ANSWER_HEADER, CHALLENGE_PATH, LinkSecrets, answer_header
from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import API_KEY, TOKEN_SECRET, free_spec
from tests.support.helpers import channel, until
from tests.support.load import Acks, check_deliveries, publish_steadily, subscribed_recorders

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def secret_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster whose link secret is in its config file (so that a reload rotates it)."""
    workdir = tmp_path_factory.mktemp("link-auth")
    for attempt in range(3):
        spec = dataclasses.replace(free_spec(), top_toml='link_secret = "old-secret"')
        cluster = LocalCluster(
            spec, workdir, TOKEN_SECRET, API_KEY, log_dir=workdir / "logs", link_secret=""
        )
        try:
            cluster.start()
        except RuntimeError:
            cluster.stop()
            if attempt == 2:
                raise
            continue  # a port was taken between the check and the bind
        break
    yield cluster
    cluster.stop()


async def challenge(session: aiohttp.ClientSession, origin: str) -> str:
    async with session.get(f"{origin}{CHALLENGE_PATH}") as response:
        assert response.status == 200
        return str((await response.json())["nonce"])


async def open_link(
    session: aiohttp.ClientSession, origin: str, header: str | None
) -> aiohttp.ClientWebSocketResponse:
    headers = {ANSWER_HEADER: header} if header is not None else {}
    return await session.ws_connect(
        f"{origin}{wire.LINK_PATH}", params={"peer": "intruder"}, headers=headers
    )


async def refused(session: aiohttp.ClientSession, origin: str, header: str | None) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await open_link(session, origin, header)
    return caught.value.status


def logged(cluster: LocalCluster, shard: str, text: str) -> bool:
    assert cluster.log_dir is not None
    return text in (cluster.log_dir / f"{shard}.log").read_text()


async def test_a_process_without_the_secret_is_refused_and_logged(
    secret_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    origin = secret_cluster.origin_url(0)
    assert await refused(session, origin, None) == 401
    await until(lambda: logged(secret_cluster, "o0", "refused: no answer to a challenge"))
    nonce = await challenge(session, origin)
    wrong = LinkSecrets(("guessed",)).answer(nonce, "intruder")
    assert await refused(session, origin, answer_header(nonce, wrong)) == 401
    await until(lambda: logged(secret_cluster, "o0", "refused: a wrong answer to the challenge"))
    made_up = LinkSecrets(("old-secret",)).answer("made-up", "intruder")
    assert await refused(session, origin, answer_header("made-up", made_up)) == 401


async def test_an_answer_is_good_once_and_the_shard_proves_itself(
    secret_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    origin = secret_cluster.origin_url(1)
    secrets = LinkSecrets(("old-secret",))
    nonce = await challenge(session, origin)
    header = answer_header(nonce, secrets.answer(nonce, "intruder"))
    ws = await open_link(session, origin, header)
    first = await ws.receive(timeout=5)
    assert first.type is aiohttp.WSMsgType.TEXT
    assert secrets.proof_is_good(nonce, "intruder", wire.proof_of(first.data))
    await ws.close()
    # The same answer again (recorded on the wire, say): refused.
    assert await refused(session, origin, header) == 401
    await until(lambda: logged(secret_cluster, "o1", "or already answered"))
    # Another shard never issued that nonce.
    assert await refused(session, secret_cluster.origin_url(2), header) == 401


async def test_rotating_the_secret_under_traffic_drops_nothing(
    secret_cluster: LocalCluster, session: aiohttp.ClientSession
) -> None:
    """Accept the new secret (old,new), sign with it (new,old), drop the old (new): a
    reload of every process each, and a shard restarted after each, so that links are made
    again under every step. Every acked publication reaches both subscribers, in order."""
    cluster = secret_cluster
    channels = [channel() for _ in range(3)]
    recorders = await subscribed_recorders(session, cluster, channels)
    acks = Acks()
    stop = asyncio.Event()
    give_up = asyncio.get_running_loop().time() + 120
    epochs: dict[str, set[str]] = {ch: set() for ch in channels}
    publishers = publish_steadily(
        session, cluster, channels, acks, epochs, stop=stop, give_up=give_up, pause=0.02
    )
    try:
        for step, (secrets, restarted) in enumerate(
            [("old-secret,new-secret", "o1"), ("new-secret,old-secret", "o2"), ("new-secret", "o0")]
        ):
            rewrite(cluster, f'link_secret = "{secrets}"')
            for name in cluster.processes:
                cluster.signal(name, signal.SIGHUP)
            before = sum(len(a) for a in acks.acked.values())
            await until(
                lambda before=before: sum(len(a) for a in acks.acked.values()) > before + 20,
                20,
                f"traffic after step {step}",
            )
            cluster.signal(restarted, signal.SIGKILL)
            await asyncio.to_thread(cluster.processes[restarted].wait)
            cluster.restart(restarted)
        nonce = await challenge(session, cluster.origin_url(1))
        old = LinkSecrets(("old-secret",)).answer(nonce, "intruder")
        assert await refused(session, cluster.origin_url(1), answer_header(nonce, old)) == 401
    finally:
        stop.set()
        await asyncio.gather(*publishers)
    for recorder in recorders:
        await until(lambda r=recorder: r.has_all(acks), 30, "every acked publication")
        check_deliveries(recorder, acks)
        await recorder.close()
    assert all(len(e) == 1 for e in epochs.values()), epochs
    for i in range(3):  # no process of the cluster was ever refused
        assert cluster.log_dir is not None
        text = (cluster.log_dir / f"o{i}.log").read_text()
        assert re.search(r"link from [eo]\d+ \(.*refused", text) is None, text


def rewrite(cluster: LocalCluster, extra: str) -> None:
    cluster.spec = dataclasses.replace(cluster.spec, top_toml=extra)
    cluster.write_config()
    assert Path(cluster.config_path).read_text().count("link_secret") == 1
