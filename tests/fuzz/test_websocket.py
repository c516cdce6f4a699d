"""Client commands over a real WebSocket, in-process: whatever a connected client sends, it
gets replies with its ids or a close code that names the problem; never an internal error."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from skyrelay.protocol.messages import METHODS
from tests.fuzz.edgehost import EdgeHost
from tests.fuzz.strategies import INT64, channel_names, fields, json_values, near

TOKEN = EdgeHost.token_for("ws-fuzzer")
SENTINEL = 4_000_000_000
# Close codes that mean the server failed, not the client.
SERVER_FAULTS = {1011, 3004}


params = fields(
    channel=channel_names | json_values,
    data=json_values,
    token=st.sampled_from([TOKEN, "bad", ""]) | json_values,
    recover=near(True),
    recoverable=near(True),
    positioned=near(True),
    offset=near(0) | INT64,
    epoch=near("x"),
    flag=near(2),
    limit=near(5) | INT64,
    since=near({"offset": 1, "epoch": "x"}),
    reverse=near(True),
    method=near("m"),
    join_leave=near(True),
    idempotency_key=near("k"),
    tf=near([]),
    type=near(1),
)
commands = st.one_of(
    st.builds(
        lambda i, m, p: {"id": i, m: p},
        st.integers(1, 1000) | INT64,
        st.sampled_from([*METHODS, "frobnicate"]),
        params,
    ),
    json_values,
)
frames = st.lists(st.lists(commands, min_size=1, max_size=3), max_size=4).map(
    lambda batches: ["\n".join(orjson.dumps(c).decode() for c in batch) for batch in batches]
)


async def _exchange(host: EdgeHost, sent: list[str]) -> tuple[list[dict[str, Any]], int | None]:
    assert host.session is not None
    replies: list[dict[str, Any]] = []
    url = f"ws://127.0.0.1:{host.edge_port}/connection/websocket"
    async with host.session.ws_connect(url, autoclose=False, autoping=True) as ws:

        async def until_reply(cmd_id: int) -> bool:
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return False
                for line in msg.data.split("\n"):
                    obj = orjson.loads(line)
                    replies.append(obj)
                    if obj.get("id") == cmd_id:
                        return True
                    if obj == {}:
                        await ws.send_str("{}")

        await ws.send_str(orjson.dumps({"id": 1, "connect": {"token": TOKEN}}).decode())
        if not await until_reply(1):
            return replies, ws.close_code
        for frame in sent:
            await ws.send_str(frame)
            probe = {"id": SENTINEL, "presence_stats": {"channel": "nohist:x"}}
            await ws.send_str(orjson.dumps(probe).decode())
            if not await until_reply(SENTINEL):
                return replies, ws.close_code
        return replies, None


@given(frames)
@example(['{"id":2,"subscribe":{"channel":"news","recover":true,"offset":-1}}'])
@example(['{"id":2,"history":{"channel":"news","limit":-1,"since":{"offset":2**64}}}'])
@example(['{"id":2,"subscribe":{"channel":"news"}}', '{"id":3,"publish":{"channel":"news"}}'])
@example(['{"id":2,"rpc":{"method":[]}}', '{"id":3,"refresh":{"token":7}}'])
@example(['{"id":2,"sub_refresh":{"channel":"$x","token":"y"}}'])
def test_any_commands_get_replies_or_a_clear_close(edge_host: EdgeHost, sent: list[str]) -> None:
    host = edge_host
    replies, code = host.call(lambda: _exchange(host, sent))
    assert code not in SERVER_FAULTS, (code, replies[-3:])
    for reply in replies:
        if "error" in reply:
            assert isinstance(reply["error"]["code"], int)
            assert isinstance(reply["error"]["message"], str)
            assert reply["error"]["code"] != 100 or reply["error"].get("temporary"), reply
    assert host.take_tracebacks() == []
