"""End-to-end encryption of publication data (pure): sealed with a per-channel key before it
leaves the client, so the relay stores and forwards ciphertext only.

Envelope: ``{"e2e": 1, "kid": "k2", "n": "<nonce b64>", "c": "<ciphertext b64>"}`` where the
ciphertext is ChaCha20-Poly1305 over the JSON of the data, bound to the channel name (as
associated data) so it cannot be replayed into another channel.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from skyrelay.client.errors import DecryptionError

ENVELOPE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12


def new_key() -> bytes:
    """A fresh random channel key."""
    return ChaCha20Poly1305.generate_key()


def key_to_text(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def key_from_text(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("a key is 32 bytes in URL-safe base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError("a key is 32 bytes in URL-safe base64")
    return key


def is_envelope(data: Any) -> bool:
    return isinstance(data, dict) and data.get("e2e") == ENVELOPE_VERSION


class Keyring:
    """Keys per channel, by key id. The key added last to a channel seals; any known key id
    opens, so rotating is: add the new key everywhere, then retire the old one later."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, ChaCha20Poly1305]] = {}
        self._sealing: dict[str, str] = {}

    def add(self, channel: str, kid: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a key is 32 bytes")
        self._keys.setdefault(channel, {})[kid] = ChaCha20Poly1305(key)
        self._sealing[channel] = kid

    def remove(self, channel: str, kid: str) -> None:
        keys = self._keys.get(channel, {})
        keys.pop(kid, None)
        if self._sealing.get(channel) == kid:
            if keys:
                self._sealing[channel] = next(reversed(keys))
            else:
                self._sealing.pop(channel, None)

    def encrypted(self, channel: str) -> bool:
        return channel in self._sealing

    def seal(self, channel: str, data: Any) -> dict[str, Any]:
        kid = self._sealing[channel]
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[channel][kid].encrypt(nonce, orjson.dumps(data), channel.encode())
        return {"e2e": ENVELOPE_VERSION, "kid": kid, "n": _b64(nonce), "c": _b64(sealed)}

    def open(self, channel: str, data: Any) -> Any:
        """The plaintext data; raises ``DecryptionError`` with the reason."""
        if not is_envelope(data):
            if self.encrypted(channel):
                raise DecryptionError(channel, None, "plaintext on an encrypted channel")
            return data
        kid = data.get("kid")
        if not isinstance(kid, str):
            raise DecryptionError(channel, None, "envelope without a key id")
        aead = self._keys.get(channel, {}).get(kid)
        if aead is None:
            raise DecryptionError(channel, kid, "no key for this key id")
        try:
            nonce = _unb64(data.get("n"))
            sealed = _unb64(data.get("c"))
            plain = aead.decrypt(nonce, sealed, channel.encode())
        except (ValueError, TypeError):
            raise DecryptionError(channel, kid, "malformed envelope") from None
        except InvalidTag:
            raise DecryptionError(channel, kid, "wrong key or tampered ciphertext") from None
        try:
            return orjson.loads(plain)
        except orjson.JSONDecodeError:
            raise DecryptionError(channel, kid, "plaintext is not JSON") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("bad base64") from None
