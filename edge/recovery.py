"""Recovery decisions (pure): may a client resume from its position, and with what?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RecoveryOutcome:
    recovered: bool
    # Publications to hand over inside the subscribe reply (empty unless recovered).
    publications: list[dict[str, Any]]
    epoch: str
    # The offset the reply carries: the client's own on success (it advances by applying the
    # publications), the stream top otherwise.
    offset: int


def decide_recovery(
    client_offset: int,
    client_epoch: str,
    page: Sequence[dict[str, Any]],
    epoch: str,
    top: int,
    max_publications: int,
) -> RecoveryOutcome:
    """Decide from a history page read after ``client_offset``: all or nothing, never partial.

    ``page`` holds the publications after the client's offset, oldest first, as read from the
    stream with a limit of ``max_publications + 1`` so that an overflow shows.
    """
    failed = RecoveryOutcome(False, [], epoch, top)
    if client_epoch and client_epoch != epoch:
        return failed
    if client_offset > top:
        return failed
    if not page:
        return RecoveryOutcome(True, [], epoch, client_offset) if client_offset == top else failed
    if len(page) > max_publications:
        return failed
    if page[0].get("offset") != client_offset + 1 or page[-1].get("offset") != top:
        return failed
    return RecoveryOutcome(True, list(page), epoch, client_offset)
