"""Minting tokens (JWT) for development and tests: ``skyrelay token``, the SDK's command line,
the local cluster and the test harness. Verification is the edge's (``edge.auth``); apps mint
their tokens in their own backend.
"""

from __future__ import annotations

from typing import Any

import jwt


def mint_token(
    secret: Any,
    user: str,
    *,
    now: float,
    ttl: float | None = None,
    algorithm: str = "HS256",
    extra: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A token for development and tests; apps mint theirs in their backend."""
    claims: dict[str, Any] = {"sub": user, "iat": int(now)}
    if ttl:
        claims["exp"] = int(now + ttl)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)
