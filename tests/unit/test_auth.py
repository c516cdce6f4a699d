"""Connection token verification, with an explicit clock."""

from __future__ import annotations

import jwt
import pytest

from edge.auth import ExpiredToken, InvalidToken, TokenVerifier, mint_token

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4
NOW = 1_800_000_000.0


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_valid_hmac_tokens(verifier: TokenVerifier, alg: str) -> None:
    token = mint_token(SECRET, "alice", now=NOW, ttl=60, algorithm=alg, extra={"info": {"a": 1}})
    creds = verifier.verify_connection(token, NOW)
    assert (creds.user, creds.expires_at, creds.info) == ("alice", int(NOW) + 60, {"a": 1})


def test_no_exp_never_expires_and_empty_sub_is_anonymous(verifier: TokenVerifier) -> None:
    creds = verifier.verify_connection(jwt.encode({}, SECRET, "HS256"), NOW)
    assert (creds.user, creds.expires_at) == ("", 0)


def test_expired_and_not_yet_valid(verifier: TokenVerifier) -> None:
    with pytest.raises(ExpiredToken):
        verifier.verify_connection(jwt.encode({"sub": "a", "exp": NOW - 1}, SECRET), NOW)
    with pytest.raises(ExpiredToken):
        verifier.verify_connection(jwt.encode({"sub": "a", "nbf": NOW + 60}, SECRET), NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        jwt.encode({"sub": "a"}, "another-secret-0123456789abcdef012", "HS256"),
        jwt.encode({"sub": "a"}, None, "none"),
        jwt.encode({"sub": "a", "channel": "c"}, SECRET, "HS256"),
        jwt.encode({"sub": 5}, SECRET, "HS256"),
        jwt.encode({"sub": "a", "exp": "soon"}, SECRET, "HS256"),
    ],
)
def test_invalid_tokens(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify_connection(token, NOW)


def test_signature_is_checked_before_expiry(verifier: TokenVerifier) -> None:
    forged_and_expired = jwt.encode({"sub": "a", "exp": NOW - 1}, "x" * 32, "HS256")
    with pytest.raises(InvalidToken):
        verifier.verify_connection(forged_and_expired, NOW)


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        TokenVerifier("")
