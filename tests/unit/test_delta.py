"""Delta subscribers' forms of a publication, without sockets: full first, patches against the
stream's previous publication after, both wire formats, made once and shared."""

from __future__ import annotations

from typing import Any

import orjson

from skyrelay.edge import json_codec, protobuf_codec
from skyrelay.edge.delta import DeltaPublication, delta_chain
from skyrelay.edge.outbox import Outgoing
from skyrelay.protocol.fossil import apply
from skyrelay.protocol.protobuf_message import decode, message
from skyrelay.protocol.protobuf_wire import split_delimited

DOC = {f"k{n}": {"v": n, "text": "ü" * 5} for n in range(40)}


def version(n: int, value: int) -> dict[str, Any]:
    return {"data": {**DOC, f"k{n}": {"v": value}}, "offset": n}


def shared(pub: dict[str, Any], base: dict[str, Any] | None, marked: bool = True) -> Outgoing:
    delta = DeltaPublication("c", pub, base, marked)
    position = ("c", "e", pub.get("offset", 0))
    return Outgoing.shared(lambda codec: codec.pub_push("c", pub), position, delta)


def json_pub(payload: bytes) -> dict[str, Any]:
    pub: dict[str, Any] = orjson.loads(payload)["push"]["pub"]
    return pub


def test_json_full_then_patch_rebuilds_the_data() -> None:
    first, second = version(1, 10), version(2, 11)
    full = json_pub(shared(first, None).delta_view(True).payload)
    assert "delta" not in full and isinstance(full["data"], str)
    patched = json_pub(shared(second, first).delta_view(False).payload)
    assert patched["delta"] is True
    base = full["data"].encode()
    assert orjson.loads(apply(base, patched["data"].encode())) == second["data"]
    assert len(patched["data"]) < len(base) / 20


def test_protobuf_carries_the_same_patch_as_bytes() -> None:
    first, second = version(1, 10), version(2, 11)
    message_ = shared(second, first).delta_view(False)
    reply = decode(message("Reply"), split_delimited(message_.in_codec(protobuf_codec).payload)[0])
    pub = reply["push"]["pub"]
    assert pub["delta"] is True
    patch = json_pub(message_.payload)["data"].encode()
    # JSON: the patch as a string; protobuf: the same bytes (decoded as JSON, they are not).
    assert pub["data"] == patch
    assert orjson.loads(apply(orjson.dumps(first["data"]), pub["data"])) == second["data"]


def test_views_are_shared_and_plain_subscribers_are_untouched() -> None:
    pub = shared(version(2, 11), version(1, 10))
    assert pub.delta_view(False) is pub.delta_view(False)
    assert json_pub(pub.payload)["data"] == version(2, 11)["data"]


def test_unmarked_or_baseless_or_unkept_publications_go_in_full() -> None:
    first, second = version(1, 10), version(2, 11)
    for case in (shared(second, first, marked=False), shared(second, None)):
        assert "delta" not in json_pub(case.delta_view(False).payload)
    unkept = {"data": {"x": 1}}
    assert "delta" not in json_pub(shared(unkept, first).delta_view(False).payload)
    assert not shared(unkept, first).leaves_base()


def test_a_batch_starts_in_full_and_restarts_after_an_unkept_one() -> None:
    a, b, c = version(1, 1), version(2, 2), version(3, 3)
    unkept = {"data": {"loose": True}}
    batch = Outgoing.batch(
        [shared(a, None), shared(b, a), shared(unkept, b), shared(c, b)]
    ).delta_view(True)
    pubs = [json_pub(p.payload) for p in batch.parts]
    assert [p.get("delta", False) for p in pubs] == [False, True, False, False]
    assert batch.leaves_base()
    lines = batch.payload.split(json_codec.SEPARATOR)
    assert len(lines) == 4


def test_a_recovered_chain_patches_each_against_the_one_before() -> None:
    pubs = [version(n, n * 7) for n in range(1, 6)]
    chain = delta_chain(json_codec, pubs)
    assert [p.get("delta", False) for p in chain] == [False, True, True, True, True]
    held = chain[0]["data"].encode()
    for pub, original in zip(chain[1:], pubs[1:], strict=True):
        held = apply(held, pub["data"].encode())
        assert orjson.loads(held) == original["data"]
    assert delta_chain(protobuf_codec, pubs)[1]["data"] == chain[1]["data"].encode()
