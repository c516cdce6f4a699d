"""The auth matrix against a running edge: every accepted algorithm connects, and every bad
token or missing permission is refused with the protocol's code while the edge keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from skyrelay.testing.cluster import LocalCluster
from tests.integration.conftest import TOKEN_SECRET, start_cluster
from tests.support.wsclient import RawClient

pytestmark = pytest.mark.timeout(120)

AUD, ISS = "skyrelay-tests", "https://auth.example"


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.jwks_rsa.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}


def claims(user: str = "u1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "aud": AUD, "iss": ISS, "iat": now, "exp": now + 600, **extra}


@pytest.fixture
async def auth_cluster(tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, Keys]]:
    keys = Keys()
    app = web.Application()

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(keys.jwks())

    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    extra = f'''
[auth]
rsa_public_key = """{pem(keys.rsa)}"""
ecdsa_public_key = """{pem(keys.ec)}"""
ed25519_public_key = """{pem(keys.ed)}"""
jwks_url = "http://127.0.0.1:{port}/jwks.json"
audience = "{AUD}"
issuer = "{ISS}"

[namespaces.ro]
allow_publish = "none"
'''
    loop = asyncio.get_running_loop()
    cluster = await loop.run_in_executor(
        None, lambda: start_cluster(tmp_path, origins=1, edges=1, replication=1, extra=extra)
    )
    yield cluster, keys
    await loop.run_in_executor(None, cluster.stop)
    await runner.cleanup()


async def connect(session: aiohttp.ClientSession, url: str, token: str) -> RawClient:
    client = RawClient(await session.ws_connect(url, autoclose=False))
    await client.send_raw(json.dumps({"id": 1, "connect": {"token": token}}))
    return client


async def outcome(client: RawClient) -> str:
    """'connected', 'error N' or 'closed N'."""
    try:
        reply = await client.reply(1)
    except ConnectionError:
        return f"closed {client.close_code}"
    if "error" in reply:
        return f"error {reply['error']['code']}"
    return "connected"


async def test_auth_matrix(auth_cluster: tuple[LocalCluster, Keys]) -> None:
    cluster, keys = auth_cluster
    url = cluster.ws_url(0)
    hs, now = TOKEN_SECRET, int(time.time())
    rsa_pem = pem(keys.rsa).encode()
    cases: dict[str, tuple[str, str]] = {
        "HS256": (jwt.encode(claims(), hs, "HS256"), "connected"),
        "HS384": (jwt.encode(claims(), hs, "HS384"), "connected"),
        "HS512": (jwt.encode(claims(), hs, "HS512"), "connected"),
        "RS256": (jwt.encode(claims(), keys.rsa, "RS256"), "connected"),
        "ES256": (jwt.encode(claims(), keys.ec, "ES256"), "connected"),
        "EdDSA": (jwt.encode(claims(), keys.ed, "EdDSA"), "connected"),
        "RS256 via JWKS": (
            jwt.encode(claims(), keys.jwks_rsa, "RS256", headers={"kid": "k1"}),
            "connected",
        ),
        "expired": (jwt.encode(claims(exp=now - 10), hs, "HS256"), "error 109"),
        "not yet valid": (jwt.encode(claims(nbf=now + 600), hs, "HS256"), "error 109"),
        "wrong signature": (jwt.encode(claims(), "x" * 64, "HS256"), "closed 3500"),
        "wrong audience": (jwt.encode(claims(aud="other"), hs, "HS256"), "closed 3500"),
        "wrong issuer": (jwt.encode(claims(iss="evil"), hs, "HS256"), "closed 3500"),
        "alg none": (jwt.encode(claims(), None, "none"), "closed 3500"),
        "RS256 key as HS256 secret": (_hs_with_key(claims(), rsa_pem), "closed 3500"),
        "unknown kid": (
            jwt.encode(
                claims(), rsa.generate_private_key(65537, 2048), "RS256", headers={"kid": "k9"}
            ),
            "closed 3500",
        ),
    }
    async with aiohttp.ClientSession() as session:
        got = {}
        for name, (token, _) in cases.items():
            client = await connect(session, url, token)
            got[name] = await outcome(client)
            await client.ws.close()
        assert got == {name: expected for name, (_, expected) in cases.items()}

        # Private channels need a subscription token for this user and channel.
        client = await connect(session, url, jwt.encode(claims("u1"), hs, "HS256"))
        assert await outcome(client) == "connected"
        missing = await client.command("subscribe", {"channel": "$secret"})
        assert missing["error"]["code"] == 103
        expired = jwt.encode(claims("u1", channel="$secret", exp=now - 5), hs, "HS256")
        reply = await client.command("subscribe", {"channel": "$secret", "token": expired})
        assert reply["error"]["code"] == 109
        good = jwt.encode(claims("u1", channel="$secret"), hs, "HS256")
        reply = await client.command("subscribe", {"channel": "$secret", "token": good})
        assert reply["subscribe"]["expires"] is True
        refreshed = await client.command("sub_refresh", {"channel": "$secret", "token": good})
        assert refreshed["sub_refresh"]["expires"] is True
        denied = await client.command("publish", {"channel": "ro:news", "data": {}})
        assert denied["error"]["code"] == 103
        other = jwt.encode(claims("u1", channel="$other"), hs, "HS256")
        await client.send_raw(
            json.dumps({"id": 99, "subscribe": {"channel": "$secret2", "token": other}})
        )
        assert await client.wait_closed() == 3500

        # The edge kept serving throughout.
        last = await connect(session, url, jwt.encode(claims("u2"), keys.ed, "EdDSA"))
        assert await outcome(last) == "connected"
        await last.ws.close()
    assert cluster.processes["e0"].poll() is None


def _hs_with_key(payload: dict[str, Any], key: bytes) -> str:
    """The classic attack: sign HS256 with the server's RSA public key as the secret."""
    import base64  # noqa: PLC0415
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(payload).encode())
    signature = hmac.new(key, signing, hashlib.sha256).digest()
    return (signing + b"." + b64(signature)).decode()
