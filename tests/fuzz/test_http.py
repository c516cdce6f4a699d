"""The edge's HTTP endpoints, driven in-process with arbitrary bodies: every answer is a status
below 500 with a JSON body that names the problem, and no request leaves a traceback."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay.edge.api import API_METHODS
from tests.fuzz.edgehost import API_KEY, EdgeHost
from tests.fuzz.strategies import channel_names, fields, json_values, near


def _error_body(content_type: str, body: bytes) -> dict[str, Any]:
    assert content_type == "application/json", body[:200]
    answer = orjson.loads(body)
    assert isinstance(answer, dict)
    return answer


def _named_error(answer: dict[str, Any]) -> None:
    error = answer["error"]
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str) and error["message"]


def _no_tracebacks(edge: EdgeHost) -> None:
    assert edge.take_tracebacks() == []


API_NAMES = st.sampled_from([*API_METHODS, "batch"]) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10
)
publish_params = fields(
    channel=channel_names | json_values,
    data=json_values,
    idempotency_key=near("k1"),
    tags=near({"a": "b"}),
    skip_history=near(True),
    channels=st.lists(channel_names, max_size=3) | json_values,
    limit=near(10),
    since=near({"offset": 1, "epoch": "x"}),
    reverse=near(True),
    pattern=near("t*"),
    user=near("fuzzer"),
    client=near("c"),
    session=near("s"),
    whitelist=near(["c"]),
    disconnect=near({"code": 4000, "reason": "r"}),
    parallel=near(True),
)
api_bodies = st.one_of(
    publish_params.map(orjson.dumps),
    st.builds(
        lambda cmds: orjson.dumps({"commands": cmds}),
        st.lists(
            st.one_of(
                st.builds(lambda m, p: {m: p}, st.sampled_from(list(API_METHODS)), publish_params),
                json_values,
            ),
            max_size=3,
        ),
    ),
    st.binary(max_size=60),
    json_values.map(orjson.dumps),
)


@given(API_NAMES, api_bodies)
@example("publish", b'{"channel":"news","data":{"x":1}}')
@example("history", b'{"channel":"news","limit":-1,"since":{"offset":0,"epoch":"x"}}')
@example("batch", b'{"commands":[{"publish":{"channel":"news","data":1}},{"nope":{}}]}')
@example("publish", b'{"channel":"a\\u0000b","data":1}')
@example("channels", b'{"pattern":"[!"}')
def test_server_api_answers_json_and_never_500(
    edge_host: EdgeHost, method: str, body: bytes
) -> None:
    status, content_type, raw = edge_host.http(
        "POST", f"/api/{method}", body, {"X-API-Key": API_KEY}
    )
    assert status in (200, 400, 404, 413), (status, raw[:200])
    answer = _error_body(content_type, raw)
    if status != 200 or "error" in answer:
        _named_error(answer)
    else:
        assert "result" in answer or "replies" in answer
    _no_tracebacks(edge_host)


@given(
    st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST"]),
    st.sampled_from(["/api/publish", "/api/", "/api/a/b", "/api/%2e%2e", "/nope", "/api"]),
    st.sampled_from([{}, {"X-API-Key": "wrong"}, {"Authorization": "apikey " + API_KEY}]),
)
def test_unknown_paths_methods_and_keys_get_json_4xx(
    edge_host: EdgeHost, method: str, path: str, headers: dict[str, str]
) -> None:
    status, content_type, raw = edge_host.http(method, path, b"{}", headers)
    assert 400 <= status < 500 or (status == 200 and path == "/api/publish"), (status, raw)
    _named_error(_error_body(content_type, raw))
    _no_tracebacks(edge_host)


TOKEN = EdgeHost.token_for("fuzzer")
position = fields(offset=near(0), epoch=near("x"))
longpoll_bodies = st.one_of(
    fields(
        token=st.sampled_from([TOKEN, "bad.token", ""]) | json_values,
        channels=st.dictionaries(channel_names, position | json_values, max_size=3) | json_values,
        cursor=st.sampled_from(["", "e30", "W10", "eyJhIjpbIngiLCJuYW4iXX0"]) | json_values,
        timeout=st.sampled_from([0, 0.01, -1, "nan", "inf", "1e999", "x"]) | json_values,
        limit=st.sampled_from([0, 1, -5, 2**63, "3", "x"]) | json_values,
        publish=st.lists(
            fields(channel=channel_names | json_values, data=json_values, idempotency_key=near("k"))
            | json_values,
            max_size=3,
        )
        | json_values,
    ).map(orjson.dumps),
    st.binary(max_size=40),
)


@given(longpoll_bodies)
@example(orjson.dumps({"token": TOKEN, "channels": {"news": {}}, "timeout": "nan"}))
@example(orjson.dumps({"token": TOKEN, "channels": {"news": {"offset": "1e999"}}}))
@example(orjson.dumps({"token": TOKEN, "channels": {"news": {}}, "limit": 2**63}))
def test_longpoll_answers_json_and_never_500(edge_host: EdgeHost, body: bytes) -> None:
    status, content_type, raw = edge_host.http("POST", "/connection/longpoll", body)
    assert status in (200, 400, 401, 403, 503), (status, raw[:200])
    answer = _error_body(content_type, raw)
    if status == 200:
        assert isinstance(answer["publications"], list)
    else:
        _named_error(answer)
    _no_tracebacks(edge_host)


def _sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[len(b"data: ") :])
        for line in raw.split(b"\n")
        if line.startswith(b"data: ")
    ]


def _ends_or_connected(raw: bytes) -> bool:
    return any("connect" in e or "disconnect" in e for e in _sse_events(raw))


sub_position = fields(recover=near(True), offset=near(0), epoch=near("x"))
connect_requests = st.one_of(
    fields(
        token=st.sampled_from([TOKEN, "bad.token", ""]) | json_values,
        subs=st.dictionaries(channel_names, sub_position | json_values, max_size=3) | json_values,
        name=near("fuzz"),
    ).map(orjson.dumps),
    st.binary(max_size=40),
)


@given(connect_requests, st.sampled_from(["GET", "POST"]))
@example(orjson.dumps({"token": "x", "subs": {"news": {"recover": True, "offset": "x"}}}), "POST")
@example(orjson.dumps({"token": "x", "subs": ["news"]}), "GET")
@example(b"\xff", "GET")
def test_uni_sse_answers_without_500(
    edge_host: EdgeHost, connect_request: bytes, method: str
) -> None:
    if method == "GET":
        query = {"cf_connect": connect_request.decode("utf-8", "replace")}
        status, content_type, raw = edge_host.stream(
            "GET", "/connection/uni_sse", params=query, enough=_ends_or_connected
        )
    else:
        status, content_type, raw = edge_host.stream(
            "POST", "/connection/uni_sse", connect_request, enough=_ends_or_connected
        )
    assert status in (200, 400), (status, raw[:200])
    if status == 400:
        _named_error(_error_body(content_type, raw))
    else:
        assert content_type == "text/event-stream"
        for event in _sse_events(raw):
            assert isinstance(event, dict)
            assert event.get("disconnect", {}).get("code") not in (3004,), event
    _no_tracebacks(edge_host)


command_lines = st.lists(
    st.one_of(
        st.builds(
            lambda i, m, p: {"id": i, m: p},
            st.integers(2, 50),
            st.sampled_from(["subscribe", "publish", "history", "presence", "refresh", "rpc"]),
            fields(channel=channel_names | json_values, data=json_values, token=near("x")),
        ),
        json_values,
    ),
    max_size=3,
)


@given(command_lines, st.sampled_from(["/connection/http_stream", "/connection/sse"]))
@example([], "/connection/sse")
def test_emulated_streams_answer_without_500(
    edge_host: EdgeHost, lines: list[Any], path: str
) -> None:
    connect = {"id": 1, "connect": {"token": TOKEN}}
    body = b"\n".join(orjson.dumps(x) for x in [connect, *lines])
    ids = {x["id"] for x in lines if isinstance(x, dict) and isinstance(x.get("id"), int)}

    def answered(raw: bytes) -> bool:
        if path.endswith("sse"):
            replies = _sse_events(raw)
        else:
            replies = [orjson.loads(x) for x in raw.split(b"\n") if x.strip()]
        seen = {r.get("id") for r in replies}
        return ids <= seen or any("disconnect" in r.get("push", {}) for r in replies)

    # JSON, as centrifuge-js says it: an octet-stream body would be protobuf.
    headers = {"Content-Type": "application/json"}
    status, _content_type, raw = edge_host.stream(
        "POST", path, body, headers=headers, enough=answered, wait=3
    )
    assert status in (200, 400, 413), (status, raw[:200])
    assert b'"code":3004' not in raw, raw[:300]
    _no_tracebacks(edge_host)


emulation_bodies = st.one_of(
    fields(session=near("s") | st.just(""), node=near("e0"), data=near('{"id":1}')).map(
        orjson.dumps
    ),
    st.binary(max_size=40),
)


@given(emulation_bodies)
def test_emulation_posts_answer_without_500(edge_host: EdgeHost, body: bytes) -> None:
    status, content_type, raw = edge_host.http("POST", "/emulation", body)
    assert status in (204, 400, 404, 413), (status, raw[:200])
    if status != 204:
        assert content_type == "application/json"
    _no_tracebacks(edge_host)
