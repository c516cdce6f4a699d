"""Public keys for token verification: PEM keys from the config, and a JWKS URL whose
document is cached with aiocache and fetched again when a token names an unknown ``kid``."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import jwt
from aiocache import SimpleMemoryCache
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from skyrelay.config import AuthSettings, ConfigError
from skyrelay.edge.auth import TokenVerifier, VerifierKeys

log = logging.getLogger("skyrelay.edge.keys")

# Seconds between two JWKS fetches caused by unknown key ids (so bad tokens cannot flood it).
JWKS_MIN_REFETCH = 5.0
# Seconds a JWKS fetch may take.
JWKS_FETCH_TIMEOUT = 5.0


def _pem(name: str, value: str) -> Any:
    if not value:
        return None
    try:
        return load_pem_public_key(value.encode())
    except ValueError:
        raise ConfigError(f"auth.{name}: not a PEM public key") from None


class JwksKeys:
    def __init__(self, url: str, ttl: float) -> None:
        self.url = url
        self.ttl = ttl
        self._cache = SimpleMemoryCache()
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self.fetches = 0

    def lookup(self, kid: str) -> Any:
        return self._keys.get(kid)

    async def ensure(self, token: str, session: aiohttp.ClientSession) -> None:
        """Make sure the key the token names is known, fetching the JWKS if needed."""
        try:
            kid = TokenVerifier.header(token).get("kid")
        except Exception:
            return
        if not isinstance(kid, str):
            return
        document = await self._cache.get(self.url)
        if document is None or (
            kid not in self._keys and time.monotonic() - self._fetched_at > JWKS_MIN_REFETCH
        ):
            await self._fetch(session)

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            async with session.get(
                self.url, timeout=aiohttp.ClientTimeout(total=JWKS_FETCH_TIMEOUT)
            ) as resp:
                document = await resp.json(content_type=None)
            keyset = jwt.PyJWKSet.from_dict(document)
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, exc)
            return
        await self._cache.set(self.url, document, ttl=self.ttl)
        self._keys = {k.key_id: k.key for k in keyset.keys if k.key_id}


def build_verifier(secret: str, auth: AuthSettings) -> tuple[TokenVerifier, JwksKeys | None]:
    keys = VerifierKeys(
        secret=secret,
        rsa=_pem("rsa_public_key", auth.rsa_public_key),
        ec=_pem("ecdsa_public_key", auth.ecdsa_public_key),
        ed=_pem("ed25519_public_key", auth.ed25519_public_key),
    )
    jwks = JwksKeys(auth.jwks_url, auth.jwks_ttl) if auth.jwks_url else None
    verifier = TokenVerifier(
        keys=keys,
        algorithms=auth.algorithms or None,
        audience=auth.audience,
        issuer=auth.issuer,
        kid_lookup=jwks.lookup if jwks is not None else None,
    )
    return verifier, jwks
