"""Proving a process on the link, where TLS is off: a shared secret and a challenge. Pure code.

Before a link opens, the connecting process (an edge or a shard) asks the shard for a
challenge: a random nonce, good once and for ``NONCE_TTL`` seconds. It answers with an HMAC
of the nonce and its own name under the link secret; the shard checks it against every secret
it accepts, and spends the nonce, before it reads a single request. The secret never travels;
a recorded answer is worthless once its nonce is spent. The shard proves itself back, in the
link's first message, with an HMAC of the same nonce under another label, so a process never
sends a request to an impostor shard.

Rotation: every process signs with the first of its secrets and accepts any of them. Roll a
new secret out in three steps, each a reload of every process: accept it (``old,new``), sign
with it (``new,old``), drop the old one (``new``).

What belongs here: nonces, answers and their checks. What never does: HTTP, clocks (callers
pass ``now``) or where the secrets come from (the config).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

# Seconds a challenge may be answered in.
NONCE_TTL = 10.0
# Challenges outstanding at most: a flood of them evicts the oldest, never grows memory.
MAX_NONCES = 10_000
# The header of the WebSocket upgrade that carries the answer.
ANSWER_HEADER = "X-Skyrelay-Link-Auth"
CHALLENGE_PATH = "/link/challenge"

_CLIENT = b"skyrelay link client"
_SERVER = b"skyrelay link server"


class LinkSecrets:
    """The secrets a process accepts; it signs with the first."""

    __slots__ = ("_keys",)

    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one non-empty link secret")
        self._keys = tuple(k.encode() for k in keys)

    def answer(self, nonce: str, peer: str) -> str:
        return _mac(self._keys[0], _CLIENT, nonce, peer)

    def proof(self, nonce: str, peer: str) -> str:
        return _mac(self._keys[0], _SERVER, nonce, peer)

    def answer_is_good(self, nonce: str, peer: str, answer: str) -> bool:
        return any(hmac.compare_digest(_mac(k, _CLIENT, nonce, peer), answer) for k in self._keys)

    def proof_is_good(self, nonce: str, peer: str, proof: str) -> bool:
        return any(hmac.compare_digest(_mac(k, _SERVER, nonce, peer), proof) for k in self._keys)


def _mac(key: bytes, label: bytes, nonce: str, peer: str) -> str:
    message = b"\n".join((label, nonce.encode(), peer.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class Keyring:
    """The link secrets a process holds now, shared by its links (a reload replaces them)."""

    __slots__ = ("secrets",)

    def __init__(self, keys: tuple[str, ...] = ()) -> None:
        self.secrets: LinkSecrets | None = None
        self.update(keys)

    def update(self, keys: tuple[str, ...]) -> None:
        self.secrets = LinkSecrets(keys) if keys else None


class NonceBook:
    """Challenges handed out and not yet answered."""

    __slots__ = ("_issued",)

    def __init__(self) -> None:
        self._issued: OrderedDict[str, float] = OrderedDict()

    def issue(self, now: float) -> str:
        nonce = secrets.token_hex(16)
        self._issued[nonce] = now + NONCE_TTL
        while len(self._issued) > MAX_NONCES:
            self._issued.popitem(last=False)
        return nonce

    def spend(self, nonce: str, now: float) -> bool:
        """True once for a nonce issued here that has not expired; never again."""
        expires = self._issued.pop(nonce, None)
        return expires is not None and now <= expires

    def __len__(self) -> int:
        return len(self._issued)


def parse_answer(header: str) -> tuple[str, str] | None:
    """(nonce, answer) from ``nonce=..., answer=...``; None when malformed."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        fields[name] = value
    nonce, answer = fields.get("nonce", ""), fields.get("answer", "")
    if not nonce or not answer or len(nonce) > 64 or len(answer) > 128:
        return None
    return nonce, answer


def answer_header(nonce: str, answer: str) -> str:
    return f"nonce={nonce}, answer={answer}"
