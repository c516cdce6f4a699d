"""Local verification of client tokens (JWT). Pure: the clock is an argument, and keys from a
JWKS URL are fetched by ``keys.JwksKeys`` before verification, never during it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
ED_ALGORITHMS = ("EdDSA",)
# Largest exp/nbf accepted, in seconds: the integers JSON readers in every language agree on.
MAX_TIME_CLAIM = 2**53


class TokenError(Exception):
    """The token cannot be used."""


class InvalidToken(TokenError):
    """Malformed, wrongly signed, or of a kind not allowed here."""


class ExpiredToken(TokenError):
    """Well signed but outside its validity window (``exp`` passed or ``nbf`` ahead)."""


class TokenMismatch(TokenError):
    """A valid subscription token for another channel, user or client."""


# Subscription options a subscription token (or a connection token's ``subs`` entry) may
# turn on or off for one subscription, over its namespace's setting.
OVERRIDE_NAMES = (
    "presence",
    "join_leave",
    "force_push_join_leave",
    "force_recovery",
    "force_positioning",
)


@dataclass(frozen=True, slots=True)
class Overrides:
    """``override`` claim: each field None (the namespace decides) or the value to use."""

    presence: bool | None = None
    join_leave: bool | None = None
    force_push_join_leave: bool | None = None
    force_recovery: bool | None = None
    force_positioning: bool | None = None


NO_OVERRIDES = Overrides()


@dataclass(frozen=True, slots=True)
class ServerSub:
    """A server-side subscription the connection token grants (``channels`` or ``subs``)."""

    channel: str
    # Channel info (``chan_info`` of this client's ClientInfo in the channel).
    info: Any = None
    # Data for the subscribe result (``data``), shown to the client as it subscribes.
    data: Any = None
    overrides: Overrides = NO_OVERRIDES


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    # Unix time after which the connection must refresh its token; 0 = never.
    expires_at: int
    info: Any = None
    # Server-side subscriptions the token grants (the ``channels`` and ``subs`` claims).
    subs: tuple[ServerSub, ...] = ()


ANONYMOUS = Credentials(user="", expires_at=0)


@dataclass(frozen=True, slots=True)
class ChannelGrant:
    """What a valid subscription token grants."""

    channel: str
    expires_at: int
    info: Any = None
    overrides: Overrides = NO_OVERRIDES


@dataclass(frozen=True, slots=True)
class VerifierKeys:
    """The keys tokens may be signed with; an algorithm without a key is refused."""

    secret: str = ""
    rsa: Any = None
    ec: Any = None
    ed: Any = None


KidLookup = Callable[[str], Any]


class TokenVerifier:
    """Checks signature first, then the claims, as the protocol's outcome table requires.

    The key follows the token's ``alg``, and only among the algorithms allowed: a token signed
    with ``none``, or an RSA public key used as an HMAC secret, is refused.
    """

    __slots__ = ("_algorithms", "_audience", "_issuer", "_keys", "_kid_lookup")

    def __init__(
        self,
        secret: str = "",
        *,
        keys: VerifierKeys | None = None,
        algorithms: Sequence[str] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        kid_lookup: KidLookup | None = None,
    ) -> None:
        self._keys = keys or VerifierKeys(secret=secret)
        if not (self._keys.secret or self._keys.rsa or self._keys.ec or self._keys.ed) and (
            kid_lookup is None
        ):
            raise ValueError("a token secret or a public key is required")
        self._algorithms = frozenset(algorithms or self.default_algorithms(kid_lookup is not None))
        self._audience = audience or None
        self._issuer = issuer or None
        self._kid_lookup = kid_lookup

    def default_algorithms(self, jwks: bool) -> tuple[str, ...]:
        found: tuple[str, ...] = ()
        if self._keys.secret:
            found += HMAC_ALGORITHMS
        if self._keys.rsa is not None or jwks:
            found += RSA_ALGORITHMS
        if self._keys.ec is not None or jwks:
            found += EC_ALGORITHMS
        if self._keys.ed is not None or jwks:
            found += ED_ALGORITHMS
        return found

    @staticmethod
    def header(token: str) -> Mapping[str, Any]:
        try:
            return jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None

    def _key_for(self, header: Mapping[str, Any]) -> Any:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken(f"algorithm {alg!r} not allowed")
        kid = header.get("kid")
        if isinstance(kid, str) and self._kid_lookup is not None and alg not in HMAC_ALGORITHMS:
            key = self._kid_lookup(kid)
            if key is not None:
                return key
        if alg in HMAC_ALGORITHMS:
            key = self._keys.secret
        elif alg in RSA_ALGORITHMS:
            key = self._keys.rsa
        elif alg in EC_ALGORITHMS:
            key = self._keys.ec
        else:
            key = self._keys.ed
        if not key:
            raise InvalidToken(f"no key for {alg}")
        return key

    def _decode(self, token: str) -> dict[str, Any]:
        if not token or not isinstance(token, str):
            raise InvalidToken("no token")
        header = self.header(token)
        key = self._key_for(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(header["alg"])],
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
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(type(exc).__name__) from None
        return claims

    def verify_connection(self, token: str, now: float) -> Credentials:
        claims = self._decode(token)
        if "channel" in claims:
            raise InvalidToken("subscription token used to connect")
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise InvalidToken("sub must be a string")
        expires_at = _check_times(claims, now)
        return Credentials(
            user=user,
            expires_at=expires_at,
            info=claims.get("info"),
            subs=parse_server_subs(claims),
        )

    def verify_admin(self, token: str, now: float) -> str:
        """An admin token (status page): signed, in its validity window, with ``admin: true``.
        Returns its subject."""
        claims = self._decode(token)
        if claims.get("admin") is not True:
            raise InvalidToken("not an admin token")
        _check_times(claims, now)
        return str(claims.get("sub", ""))

    def verify_subscription(
        self, token: str, channel: str, user: str, client: str, now: float
    ) -> ChannelGrant:
        """A subscription token for ``channel``: signed (else InvalidToken), for this user,
        channel and client (else TokenMismatch), and in its validity window."""
        claims = self._decode(token)
        if claims.get("channel") != channel:
            raise TokenMismatch("token is for another channel")
        if claims.get("sub", "") != user:
            raise TokenMismatch("token is for another user")
        token_client = claims.get("client")
        if token_client not in (None, "", client):
            raise TokenMismatch("token is for another client")
        expires_at = _check_times(claims, now)
        return ChannelGrant(
            channel, expires_at, claims.get("info"), parse_overrides(claims.get("override"))
        )


def _check_times(claims: dict[str, Any], now: float) -> int:
    """Checks ``exp`` and ``nbf``; returns when the connection or subscription expires:
    ``expire_at`` where the token sets it (0 = never), else ``exp``."""
    exp = _time_claim(claims, "exp")
    nbf = _time_claim(claims, "nbf")
    if exp and exp <= now:
        raise ExpiredToken("exp")
    if nbf and nbf > now:
        raise ExpiredToken("nbf")
    if "expire_at" in claims:
        expire_at = _time_claim(claims, "expire_at")
        if expire_at and expire_at <= now:
            raise ExpiredToken("expire_at")
        return math.ceil(expire_at)
    return math.ceil(exp)


def parse_overrides(claim: Any) -> Overrides:
    """The ``override`` claim: ``{"presence": {"value": true}, ...}``."""
    if claim is None:
        return NO_OVERRIDES
    if not isinstance(claim, dict):
        raise InvalidToken("override must be an object")
    values: dict[str, bool] = {}
    for name in OVERRIDE_NAMES:
        entry = claim.get(name)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), bool):
            raise InvalidToken(f'override.{name} must be {{"value": true|false}}')
        values[name] = entry["value"]
    return Overrides(**values)


def parse_server_subs(claims: dict[str, Any]) -> tuple[ServerSub, ...]:
    """``channels`` (names) and ``subs`` (name -> options), in that order, each name once."""
    channels = claims.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise InvalidToken("channels must be a list of strings")
    subs = claims.get("subs", {})
    if not isinstance(subs, dict):
        raise InvalidToken("subs must map channels to options")
    found: dict[str, ServerSub] = {name: ServerSub(name) for name in channels}
    for name, options in subs.items():
        if not isinstance(options, dict):
            raise InvalidToken("subs entries must be objects")
        found[name] = ServerSub(
            name, options.get("info"), options.get("data"), parse_overrides(options.get("override"))
        )
    return tuple(found.values())


def _time_claim(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} must be a number")
    # Python's JSON reads NaN and Infinity, and a huge value would not survive the replies.
    if not math.isfinite(value) or abs(value) > MAX_TIME_CLAIM:
        raise InvalidToken(f"{name} out of range")
    return value
