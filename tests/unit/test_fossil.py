"""Fossil delta patches: what ``create`` makes, our ``apply`` and centrifuge-python's (an
independent decoder of the format) both turn back into the target."""

from __future__ import annotations

import random

import orjson
import pytest
from centrifuge.fossil import apply_delta as their_apply

from skyrelay.protocol.fossil import PatchError, apply, checksum, create


def document(rng: random.Random, fields: int = 60) -> dict[str, object]:
    return {
        f"player-{n}": {"score": rng.randrange(10**6), "name": f"näme {n} 😀", "rank": n}
        for n in range(fields)
    }


def test_one_field_changed_makes_a_small_patch() -> None:
    rng = random.Random(7)
    doc = document(rng)
    before = orjson.dumps(doc)
    for _ in range(50):
        key = f"player-{rng.randrange(60)}"
        doc[key] = {**doc[key], "score": rng.randrange(10**6)}  # type: ignore[dict-item]
        after = orjson.dumps(doc)
        patch = create(before, after)
        assert apply(before, patch) == after
        assert their_apply(before, patch) == after
        assert len(patch) < len(after) // 20
        patch.decode()  # valid UTF-8: JSON clients get it as a string
        before = after


@pytest.mark.parametrize("seed", range(40))
def test_random_edits_round_trip_and_stay_utf8(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = 'abcdefgh{}:,"0123 éü日本😀'
    source = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 3000)))
    chars = list(source)
    for _ in range(rng.randrange(1, 20)):
        at = rng.randrange(len(chars) + 1)
        if rng.random() < 0.5 and chars:
            del chars[at : at + rng.randrange(1, 50)]
        else:
            chars[at:at] = rng.choice(alphabet) * rng.randrange(1, 40)
    if rng.random() < 0.3:  # a moved block
        cut = rng.randrange(len(chars) + 1)
        chars = chars[cut:] + chars[:cut]
    a, b = source.encode(), "".join(chars).encode()
    patch = create(a, b)
    assert apply(a, patch) == b
    assert their_apply(a, patch) == b
    patch.decode()


def test_edge_cases() -> None:
    for a, b in [(b"", b""), (b"", b"abc"), (b"abc", b""), (b"same", b"same"), (b"x" * 100, b"y")]:
        assert apply(a, create(a, b)) == b
        assert their_apply(a, create(a, b)) == b


def test_the_documented_example() -> None:
    assert apply(b"hello world", b"H\n6@0,6:there 5@6,OPwXW;") == b"hello there world"
    words = [b"hell", b"o th", b"ere ", b"worl", b"d\0\0\0"]
    assert checksum(b"hello there world") == sum(map(int.from_bytes, words)) & 0xFFFFFFFF


@pytest.mark.parametrize(
    "patch",
    [b"", b"5", b"5x", b"5\n9@0,0;", b"3\n3:ab", b"3\n3:abc0;", b"3\n3?abc", b"3\n3:abc"],
)
def test_bad_patches_are_refused(patch: bytes) -> None:
    with pytest.raises(PatchError):
        apply(b"abcdef", patch)
