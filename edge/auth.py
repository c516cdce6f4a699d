"""Local verification of connection tokens (JWT). Pure: the clock is an argument."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


class TokenError(Exception):
    """The token cannot be used."""


class InvalidToken(TokenError):
    """Malformed, wrongly signed, or of a kind not allowed here."""


class ExpiredToken(TokenError):
    """Well signed but outside its validity window (``exp`` passed or ``nbf`` ahead)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    # Unix time after which the connection must refresh its token; 0 = never.
    expires_at: int
    info: Any = None
    # Server-side subscriptions the token grants (the ``channels`` claim).
    channels: tuple[str, ...] = ()


class TokenVerifier:
    """Checks signature first, then the claims, as the protocol's outcome table requires."""

    __slots__ = ("_algorithms", "_audience", "_issuer", "_key")

    def __init__(
        self,
        secret: str,
        *,
        algorithms: Sequence[str] = HMAC_ALGORITHMS,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a token secret is required")
        self._key = secret
        self._algorithms = list(algorithms)
        self._audience = audience
        self._issuer = issuer

    def _decode(self, token: str) -> dict[str, Any]:
        if not token or not isinstance(token, str):
            raise InvalidToken("no token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        return claims

    def verify_connection(self, token: str, now: float) -> Credentials:
        claims = self._decode(token)
        if "channel" in claims:
            raise InvalidToken("subscription token used to connect")
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise InvalidToken("sub must be a string")
        exp = _time_claim(claims, "exp")
        nbf = _time_claim(claims, "nbf")
        if exp and exp <= now:
            raise ExpiredToken("exp")
        if nbf and nbf > now:
            raise ExpiredToken("nbf")
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise InvalidToken("channels must be a list of strings")
        return Credentials(
            user=user, expires_at=exp, info=claims.get("info"), channels=tuple(channels)
        )


def _time_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} must be a number")
    return int(value)


def mint_token(
    secret: str,
    user: str,
    *,
    now: float,
    ttl: float | None = None,
    algorithm: str = "HS256",
    extra: dict[str, Any] | None = None,
) -> str:
    """A token for development and tests; apps mint theirs in their backend."""
    claims: dict[str, Any] = {"sub": user, "iat": int(now)}
    if ttl:
        claims["exp"] = int(now + ttl)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm=algorithm)
