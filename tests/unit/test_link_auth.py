"""The link's challenge: answers under the shared secret, nonces good once, rotation."""

from __future__ import annotations

import pytest

from skyrelay.link.auth import (
    MAX_NONCES,
    NONCE_TTL,
    LinkSecrets,
    NonceBook,
    answer_header,
    parse_answer,
)


def test_an_answer_is_good_only_for_its_nonce_peer_and_secret() -> None:
    shard, edge = LinkSecrets(("s3cret",)), LinkSecrets(("s3cret",))
    answer = edge.answer("n1", "e0")
    assert shard.answer_is_good("n1", "e0", answer)
    assert not shard.answer_is_good("n2", "e0", answer)
    assert not shard.answer_is_good("n1", "e1", answer)
    assert not LinkSecrets(("other",)).answer_is_good("n1", "e0", answer)
    # The shard's proof is not a client's answer, nor the other way round.
    assert not shard.answer_is_good("n1", "e0", shard.proof("n1", "e0"))
    assert edge.proof_is_good("n1", "e0", shard.proof("n1", "e0"))
    assert "s3cret" not in answer


def test_rotation_accepts_both_and_signs_with_the_first() -> None:
    old, accepting, signing, new = (
        LinkSecrets(("old",)),
        LinkSecrets(("old", "new")),
        LinkSecrets(("new", "old")),
        LinkSecrets(("new",)),
    )
    for signer in (old, accepting):
        assert accepting.answer_is_good("n", "p", signer.answer("n", "p"))
        assert signing.answer_is_good("n", "p", signer.answer("n", "p"))
    assert new.answer_is_good("n", "p", signing.answer("n", "p"))
    assert not new.answer_is_good("n", "p", old.answer("n", "p"))
    with pytest.raises(ValueError):
        LinkSecrets(())
    with pytest.raises(ValueError):
        LinkSecrets(("",))


def test_a_nonce_is_good_once_and_not_after_it_expires() -> None:
    book = NonceBook()
    nonce = book.issue(100.0)
    assert book.spend(nonce, 100.0 + NONCE_TTL)
    assert not book.spend(nonce, 101.0)  # replayed
    late = book.issue(100.0)
    assert not book.spend(late, 100.0 + NONCE_TTL + 0.1)
    assert not book.spend("never-issued", 100.0)


def test_a_flood_of_challenges_stays_bounded() -> None:
    book = NonceBook()
    first = book.issue(0.0)
    for _ in range(MAX_NONCES):
        book.issue(0.0)
    assert len(book) == MAX_NONCES
    assert not book.spend(first, 0.0)


def test_the_answer_header() -> None:
    assert parse_answer(answer_header("abc", "def")) == ("abc", "def")
    assert parse_answer("nonce=abc") is None
    assert parse_answer("garbage") is None
    assert parse_answer("nonce=" + "x" * 65 + ", answer=y") is None
