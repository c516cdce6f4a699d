"""What the storage log's records mean, and replaying them into channel copies. Pure code.

Two kinds of record, each about one channel:

- ``s`` (state): the whole copy, as a leader starts it or installs it on a follower, or as
  compaction rewrites it: epoch, top, committed, the term it was accepted under, and every
  publication held. It replaces whatever came before it.
- ``p`` (publications): publications appended after the copy's top, under a term, with the
  commit point known when they were written.

What belongs here: the record shapes and the replay rules. What never does: files, frames,
clocks (``now`` is passed in), or the replication protocol beyond the fields it stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

STATE = "s"
PUBLICATIONS = "p"


def state_record(
    channel: str, snapshot: dict[str, Any], accepted_term: int, now: float
) -> dict[str, Any]:
    return {"k": STATE, "ch": channel, "at": accepted_term, "t": now, **snapshot}


def publications_record(
    channel: str, term: int, pubs: list[dict[str, Any]], committed: int, now: float
) -> dict[str, Any]:
    return {"k": PUBLICATIONS, "ch": channel, "at": term, "pubs": pubs, "c": committed, "t": now}


@dataclass(slots=True)
class ChannelImage:
    """A channel's copy as the log describes it, ready for ``ChannelStream.restore``."""

    epoch: str
    top: int
    committed: int
    accepted_term: int
    pubs: list[dict[str, Any]] = field(default_factory=list)
    # Wall-clock seconds of the newest record: an idle copy expires with its history TTL.
    touched: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "top": self.top,
            "committed": self.committed,
            "pubs": self.pubs,
        }


@dataclass(slots=True)
class Replay:
    """Channel copies rebuilt from records, and the records that made no sense (each one
    named, so a damaged log is reported, never half-applied)."""

    images: dict[str, ChannelImage] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    def apply(self, record: dict[str, Any], keep: int) -> None:
        """Apply one record; ``keep`` is how many publications the channel holds at most."""
        try:
            self._apply(record, keep)
        except (KeyError, TypeError, ValueError) as exc:
            self.rejected.append(f"{record.get('k')!r} record for {record.get('ch')!r}: {exc}")

    def _apply(self, record: dict[str, Any], keep: int) -> None:
        kind, channel = record["k"], record["ch"]
        if not isinstance(channel, str):
            raise TypeError("channel must be a string")
        touched = float(record.get("t", 0.0))
        if kind == STATE:
            pubs = _publications(record.get("pubs", []))
            image = ChannelImage(
                _text(record["epoch"]),
                _count(record["top"]),
                _count(record.get("committed", 0)),
                _count(record["at"]),
                pubs[-keep:] if keep else [],
                touched,
            )
            _check_run(image)
            self.images[channel] = image
            return
        if kind != PUBLICATIONS:
            raise ValueError(f"unknown record kind {kind!r}")
        image_or_none = self.images.get(channel)
        if image_or_none is None:
            raise ValueError("publications for a channel without a state")
        image = image_or_none
        term = _count(record["at"])
        if term < image.accepted_term:
            raise ValueError(f"term {term} is older than the copy's {image.accepted_term}")
        for pub in _publications(record["pubs"]):
            offset = pub.get("offset", 0)
            if offset <= image.top:
                continue  # written twice (a resent append): the first one stands
            if offset != image.top + 1:
                raise ValueError(f"offset {offset} does not follow {image.top}")
            image.top = offset
            image.pubs.append(pub)
        if keep and len(image.pubs) > keep:
            del image.pubs[: len(image.pubs) - keep]
        elif not keep:
            image.pubs.clear()
        image.accepted_term = term
        image.committed = min(max(image.committed, _count(record.get("c", 0))), image.top)
        image.touched = max(image.touched, touched)


def replay(
    records: Iterable[dict[str, Any]],
    keep: Callable[[str], int | None],
    ttl: Callable[[str], float],
    now: float,
) -> Replay:
    """Every channel copy the records leave, trimmed to its namespace's history (``keep``:
    None for a channel no namespace takes any more, which is dropped) and without the copies
    idle past their history TTL (their position has expired)."""
    result = Replay()
    for record in records:
        channel = record.get("ch")
        size = keep(channel) if isinstance(channel, str) else 0
        if size is None:
            continue
        result.apply(record, size)
    for channel, image in list(result.images.items()):
        horizon = now - ttl(channel)
        if image.touched < horizon:
            del result.images[channel]
            continue
        # From the oldest only: offsets must stay consecutive up to top, whatever the clocks
        # of successive leaders said.
        expired = 0
        while expired < len(image.pubs) and image.pubs[expired].get("time", 0) / 1000 <= horizon:
            expired += 1
        del image.pubs[:expired]
    return result


def _publications(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise TypeError("pubs must be a list of objects")
    return value


def _check_run(image: ChannelImage) -> None:
    offsets = [p.get("offset") for p in image.pubs]
    if offsets != list(range(image.top - len(offsets) + 1, image.top + 1)):
        raise ValueError("publications of a state must run consecutively up to its top")
    if image.committed > image.top:
        raise ValueError("committed is past top")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("epoch must be a non-empty string")
    return value
