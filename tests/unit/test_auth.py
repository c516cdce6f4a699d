"""Connection token verification, with an explicit clock."""

from __future__ import annotations

import jwt
import pytest

from skyrelay.edge.auth import (
    ExpiredToken,
    InvalidToken,
    Overrides,
    ServerSub,
    TokenVerifier,
)
from skyrelay.tokens import mint_token

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


def mint(user: str, **claims: object) -> str:
    return mint_token(SECRET, user, now=NOW, extra=dict(claims))


def test_expire_at_sets_the_expiry_apart_from_exp(verifier: TokenVerifier) -> None:
    both = mint("ann", exp=int(NOW) + 3600, expire_at=int(NOW) + 60)
    assert verifier.verify_connection(both, NOW).expires_at == int(NOW) + 60
    never = mint("ann", exp=int(NOW) + 3600, expire_at=0)
    assert verifier.verify_connection(never, NOW).expires_at == 0
    with pytest.raises(ExpiredToken):
        verifier.verify_connection(mint("ann", expire_at=int(NOW) - 1), NOW)
    grant = verifier.verify_subscription(
        mint("ann", channel="c", expire_at=int(NOW) + 5), "c", "ann", "id", NOW
    )
    assert grant.expires_at == int(NOW) + 5


def test_subscription_token_overrides_and_info(verifier: TokenVerifier) -> None:
    token = mint(
        "ann",
        channel="c",
        info={"role": "mod"},
        override={"presence": {"value": False}, "force_recovery": {"value": True}},
    )
    grant = verifier.verify_subscription(token, "c", "ann", "id", NOW)
    assert grant.info == {"role": "mod"}
    assert grant.overrides == Overrides(presence=False, force_recovery=True)
    for bad in ({"presence": True}, {"presence": {"value": "yes"}}, ["presence"]):
        with pytest.raises(InvalidToken):
            verifier.verify_subscription(
                mint("ann", channel="c", override=bad), "c", "ann", "", NOW
            )


def test_server_side_subscriptions_from_channels_and_subs(verifier: TokenVerifier) -> None:
    token = mint(
        "ann",
        channels=["a", "b"],
        subs={"b": {"info": {"x": 1}}, "c": {"data": {"hi": True}}},
    )
    subs = verifier.verify_connection(token, NOW).subs
    assert [s.channel for s in subs] == ["a", "b", "c"]
    assert subs[1] == ServerSub("b", info={"x": 1})
    assert subs[2].data == {"hi": True}
    for bad in ({"channels": "a"}, {"subs": ["a"]}, {"subs": {"a": 1}}):
        with pytest.raises(InvalidToken):
            verifier.verify_connection(mint("ann", **bad), NOW)
