"""Development tokens: what ``mint_token`` puts in a JWT."""

from __future__ import annotations

import jwt

from skyrelay.tokens import mint_token

KEY = "0123456789abcdef0123456789abcdef"


def test_a_token_names_its_user_and_expires_only_when_asked() -> None:
    token = mint_token(KEY, "alice", now=1000.0)
    assert jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_iat": False}) == {
        "sub": "alice",
        "iat": 1000,
    }
    timed = mint_token(KEY, "bob", now=1000.5, ttl=60)
    claims = jwt.decode(timed, options={"verify_signature": False})
    assert claims["exp"] == 1060


def test_extra_claims_and_headers_are_carried() -> None:
    token = mint_token(
        KEY, "u", now=1.0, extra={"channels": ["a"], "sub": "other"}, headers={"kid": "k1"}
    )
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["channels"] == ["a"] and claims["sub"] == "other"
