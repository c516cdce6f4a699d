"""End-to-end sealing of publications: keyrings, envelopes and their errors."""

from __future__ import annotations

import base64

import orjson
import pytest

from skyrelay.client.crypto import Keyring, key_from_text, key_to_text, new_key
from skyrelay.client.errors import DecryptionError


def flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_sealed_data_opens_with_any_known_key_and_never_leaks() -> None:
    k1, k2 = new_key(), new_key()
    writer, reader, stale = Keyring(), Keyring(), Keyring()
    for ring in (writer, reader, stale):
        ring.add("chat", "k1", k1)
    writer.add("chat", "k2", k2)
    reader.add("chat", "k2", k2)
    old = Keyring()
    old.add("chat", "k1", k1)
    first = old.seal("chat", {"t": "secret"})
    second = writer.seal("chat", {"t": "secret"})
    assert second["kid"] == "k2" and b"secret" not in orjson.dumps(second)
    assert reader.open("chat", first) == {"t": "secret"}
    assert reader.open("chat", second) == {"t": "secret"}
    with pytest.raises(DecryptionError, match="no key for this key id"):
        stale.open("chat", second)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda env: {**env, "c": flip(env["c"])}, "wrong key or tampered"),
        (lambda env: {**env, "n": "!!"}, "malformed envelope"),
        (lambda env: {**env, "kid": 3}, "without a key id"),
    ],
)
def test_bad_envelopes_are_typed_errors(mangle: object, reason: str) -> None:
    ring = Keyring()
    ring.add("chat", "k", new_key())
    envelope = ring.seal("chat", [1, 2])
    with pytest.raises(DecryptionError, match=reason):
        ring.open("chat", mangle(envelope))  # type: ignore[operator]


def test_ciphertext_is_bound_to_its_channel_and_plaintext_is_refused_where_sealed() -> None:
    key = new_key()
    ring = Keyring()
    ring.add("a", "k", key)
    ring.add("b", "k", key)
    with pytest.raises(DecryptionError, match="tampered"):
        ring.open("b", ring.seal("a", 1))
    with pytest.raises(DecryptionError, match="plaintext"):
        ring.open("a", {"text": "hi"})
    assert Keyring().open("other", {"text": "hi"}) == {"text": "hi"}
    assert key_from_text(key_to_text(key)) == key
    with pytest.raises(ValueError, match="32 bytes"):
        key_from_text("c2hvcnQ")
