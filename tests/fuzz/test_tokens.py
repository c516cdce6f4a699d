"""JWT handling: any string, any mutation of a valid token and any claims signed with a good
key end in a verdict (InvalidToken, ExpiredToken, TokenMismatch) or credentials; a modified
token is never accepted."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import assume, example, given
from hypothesis import strategies as st

from skyrelay.edge.auth import (
    Credentials,
    InvalidToken,
    TokenError,
    TokenVerifier,
    VerifierKeys,
)
from skyrelay.tokens import mint_token
from tests.fuzz.strategies import json_objects, json_values

SECRET = "fuzz-token-secret-" + "0123456789abcdef" * 4
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
VERIFIER = TokenVerifier(
    keys=VerifierKeys(
        secret=SECRET,
        rsa=RSA_KEY.public_key(),
        ec=EC_KEY.public_key(),
        ed=ED_KEY.public_key(),
    )
)
SIGNERS: dict[str, Any] = {
    "HS256": SECRET,
    "HS512": SECRET,
    "RS256": RSA_KEY,
    "ES256": EC_KEY,
    "EdDSA": ED_KEY,
}
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NOW = time.time()


def _valid(alg: str, extra: dict[str, Any] | None = None) -> str:
    return mint_token(SIGNERS[alg], "fuzz-user", now=NOW, ttl=3600, algorithm=alg, extra=extra)


# One token per algorithm, minted once: signing is the slow part.
VALID = {alg: _valid(alg) for alg in SIGNERS}
VALID_SUB = {alg: _valid(alg, {"channel": "$c"}) for alg in SIGNERS}


def _verdicts(token: str) -> list[object]:
    """Every verification the edge makes; each returns or raises a TokenError."""
    out: list[object] = []
    for verify in (
        lambda: VERIFIER.verify_connection(token, NOW),
        lambda: VERIFIER.verify_subscription(token, "$c", "fuzz-user", "client-1", NOW),
        lambda: VERIFIER.verify_admin(token, NOW),
    ):
        try:
            out.append(verify())
        except TokenError as exc:
            out.append(exc)
    return out


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@given(st.text(max_size=200))
@example("a.b.c")
@example("..")
@example("e30.e30.")
@example(_b64(b'{"alg":"none"}') + "." + _b64(b"{}") + ".")
@example(_b64(b'["alg"]') + "." + _b64(b"{}") + ".x")
@example(_b64(b'{"alg":"HS256","kid":7}') + "." + _b64(b"{}") + ".x")
@example(_b64(b"\xff\xfe") + "." + _b64(b"{}") + ".x")
def test_any_string_is_refused(token: str) -> None:
    for verdict in _verdicts(token):
        assert isinstance(verdict, InvalidToken)


@given(
    st.one_of(json_objects, json_values),
    st.one_of(json_objects, json_values),
    st.binary(max_size=80),
)
def test_jwt_shaped_garbage_is_refused(header: Any, payload: Any, signature: bytes) -> None:
    token = ".".join(_b64(orjson.dumps(part)) for part in (header, payload)) + "." + _b64(signature)
    for verdict in _verdicts(token):
        assert isinstance(verdict, InvalidToken)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str]:
    alg = draw(st.sampled_from(sorted(SIGNERS)))
    token = draw(st.sampled_from([VALID[alg], VALID_SUB[alg]]))
    kind = draw(st.sampled_from(["replace", "delete", "insert", "swap"]))
    i = draw(st.integers(0, len(token) - 1))
    if kind == "replace":
        char = draw(st.sampled_from(B64_ALPHABET + ".=+/ "))
        mutated = token[:i] + char + token[i + 1 :]
    elif kind == "delete":
        mutated = token[:i] + token[i + 1 :]
    elif kind == "insert":
        mutated = token[:i] + draw(st.sampled_from(B64_ALPHABET + ".=")) + token[i:]
    else:
        header, _, signature = token.split(".")
        other = VALID_SUB[alg] if token == VALID[alg] else VALID[alg]
        mutated = ".".join([header, other.split(".")[1], signature])
    return token, mutated


@given(mutations())
def test_a_modified_token_is_never_accepted(case: tuple[str, str]) -> None:
    original, mutated = case
    assume(mutated != original)
    for verdict in _verdicts(mutated):
        assert isinstance(verdict, InvalidToken), (mutated, verdict)


def test_the_unmodified_tokens_are_accepted() -> None:
    for alg in SIGNERS:
        assert isinstance(VERIFIER.verify_connection(VALID[alg], NOW), Credentials)
        grant = VERIFIER.verify_subscription(VALID_SUB[alg], "$c", "fuzz-user", "c1", NOW)
        assert grant.channel == "$c"


claim_values = st.one_of(
    json_values, st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**70, -1])
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["sub", "exp", "nbf", "iat", "channel", "client", "channels", "info", "admin", "aud"]
        ),
        claim_values,
    ),
    st.sampled_from(["HS256", "ES256"]),
)
def test_any_claims_signed_with_a_good_key_get_a_verdict(claims: dict[str, Any], alg: str) -> None:
    # Python's JSON writes NaN and Infinity, and PyJWT reads them back: a backend can sign them.
    token = jwt.encode(claims, SIGNERS[alg], algorithm=alg)
    for verdict in _verdicts(token):
        assert isinstance(verdict, TokenError | Credentials | str) or hasattr(verdict, "channel")
    connection = _verdicts(token)[0]
    if isinstance(connection, Credentials):
        assert isinstance(connection.user, str)
        assert isinstance(connection.expires_at, int)
        assert connection.expires_at == 0 or NOW < connection.expires_at <= 2**53
