"""The protocol's codes and what each tells a client to do."""

from __future__ import annotations

from skyrelay.protocol.codes import (
    ErrorCode,
    ReplyError,
    UnsubscribeCode,
    reconnects,
    resubscribes,
    retry_subscribe,
)


def test_which_disconnects_end_for_good() -> None:
    assert reconnects(3001) and reconnects(3010) and reconnects(4000) and reconnects(1006)
    assert not reconnects(3500) and not reconnects(3999) and not reconnects(4500)
    assert not reconnects(1009)  # too big: the same message would fail again
    assert reconnects(5000)


def test_which_unsubscribes_resubscribe() -> None:
    assert not resubscribes(UnsubscribeCode.SERVER)
    assert resubscribes(UnsubscribeCode.INSUFFICIENT_STATE)
    assert resubscribes(UnsubscribeCode.EXPIRED) and resubscribes(UnsubscribeCode.STATE_INVALIDATED)


def test_which_subscribe_errors_retry() -> None:
    assert retry_subscribe(ReplyError(ErrorCode.TOKEN_EXPIRED))
    assert retry_subscribe(ReplyError(ErrorCode.INTERNAL))  # temporary by default
    assert retry_subscribe(ReplyError(ErrorCode.TOO_MANY_REQUESTS))
    assert not retry_subscribe(ReplyError(ErrorCode.PERMISSION_DENIED))
    assert not retry_subscribe(ReplyError(ErrorCode.UNRECOVERABLE_POSITION))


def test_an_error_object_reads_the_same_from_any_wire_format() -> None:
    error = ReplyError.from_body({"code": 109, "message": "token expired"})
    assert (error.code, error.message, error.temporary) == (109, "token expired", False)
    assert ReplyError.from_body({"code": 100, "message": "x", "temporary": True}).temporary
    assert ReplyError.from_body({}).code == ErrorCode.INTERNAL
    assert ReplyError.from_body({"code": "oops"}).code == ErrorCode.INTERNAL
    assert ReplyError.from_body({"message": "gateway"}, temporary=True).temporary
