"""The proxy protocol's replies: results, the backend's errors and disconnects, and every
reply that is not the protocol (a bad reply: the client gets a temporary error)."""

from __future__ import annotations

import pytest

from skyrelay.config.backend import StatusTransform
from skyrelay.edge.auth import Overrides
from skyrelay.edge.proxy_replies import (
    BadReply,
    connect_grant,
    extension,
    outcome,
    publish_rewrite,
    rpc_data,
    status_answer,
    subscribe_grant,
)
from skyrelay.protocol.codes import Disconnect, ReplyError


def test_results_errors_and_disconnects() -> None:
    assert outcome(b'{"result": {"user": "u"}}') == {"user": "u"}
    assert outcome(b"{}") is None
    with pytest.raises(ReplyError) as refused:
        outcome(b'{"error": {"code": 1000, "message": "nope", "temporary": true}}')
    assert (refused.value.code, refused.value.message, refused.value.temporary) == (
        1000,
        "nope",
        True,
    )
    with pytest.raises(Disconnect) as gone:
        outcome(b'{"disconnect": {"code": 4501, "reason": "banned"}}')
    assert (gone.value.code, gone.value.reason) == (4501, "banned")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not an object"),
        (b'{"result": 7}', "result is not an object"),
        (b'{"error": {"code": 5000, "message": "x"}}', "error.code"),
        (b'{"error": {"code": "1", "message": "x"}}', "error.code"),
        (b'{"disconnect": {"code": 1000, "reason": "x"}}', "disconnect.code"),
        (b'{"error": {"code": 400, "message": 1}}', "message must be a string"),
    ],
)
def test_bad_replies(raw: bytes, problem: str) -> None:
    with pytest.raises(BadReply, match=problem):
        outcome(raw)


def test_a_reply_for_another_user_is_never_obeyed() -> None:
    assert outcome(b'{"result": {"user": "alice"}}', "alice") == {"user": "alice"}
    with pytest.raises(BadReply, match="another user"):
        outcome(b'{"result": {"user": "mallory"}}', "alice")


def test_connect_grants() -> None:
    grant = connect_grant(
        {"user": "u", "expire_at": 99, "info": {"n": 1}, "data": [1], "channels": ["a"]}
    )
    assert grant is not None
    assert (grant.user, grant.expire_at, grant.info, grant.data) == ("u", 99, {"n": 1}, [1])
    assert [s.channel for s in grant.subs] == ["a"]
    assert connect_grant(None) is None
    assert connect_grant({}) is not None  # anonymous
    for bad in ({"user": 7}, {"expire_at": -1}, {"expire_at": "soon"}, {"channels": "a"}):
        with pytest.raises(BadReply):
            connect_grant(bad)


def test_extensions_and_subscribes() -> None:
    assert extension(None).expired and extension({"expired": True}).expired
    assert extension({"expire_at": 50, "info": 1}) == extension({"expire_at": 50, "info": 1})
    assert not extension({}).expired
    grant = subscribe_grant({"info": "i", "data": "d", "override": {"presence": {"value": False}}})
    assert grant.overrides == Overrides(presence=False) and grant.data == "d"
    with pytest.raises(BadReply):
        subscribe_grant(None)
    with pytest.raises(BadReply):
        subscribe_grant({"override": {"presence": True}})


def test_publish_rewrites() -> None:
    request = {"ch": "c", "data": {"a": 1}}
    assert publish_rewrite({}, request) == request
    assert publish_rewrite(
        {"data": {"b": 2}, "skip_history": True, "tags": {"t": "v"}, "idempotency_key": "k"},
        request,
    ) == {"ch": "c", "data": {"b": 2}, "skip_history": True, "tags": {"t": "v"}, "ikey": "k"}
    for bad in ({"tags": {"t": 1}}, {"idempotency_key": ""}):
        with pytest.raises(BadReply):
            publish_rewrite(bad, request)
    assert rpc_data({"data": 5}) == {"data": 5} and rpc_data(None) == {}


def test_statuses_the_proxy_transforms_become_the_clients_answer() -> None:
    transforms = (
        StatusTransform(403, error_code=1403, error_message="no"),
        StatusTransform(410, disconnect_code=4410, disconnect_reason="gone"),
        StatusTransform(503, error_code=1503, error_message="later", error_temporary=True),
    )
    error = status_answer(transforms, 403)
    assert isinstance(error, ReplyError) and (error.code, error.message) == (1403, "no")
    assert not error.temporary
    later = status_answer(transforms, 503)
    assert isinstance(later, ReplyError) and later.temporary
    gone = status_answer(transforms, 410)
    assert isinstance(gone, Disconnect) and (gone.code, gone.reason) == (4410, "gone")
    assert status_answer(transforms, 500) is None
    assert status_answer((), 403) is None
