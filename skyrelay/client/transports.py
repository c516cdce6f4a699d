"""The asyncio side: moving protocol messages over WebSocket, the HTTP-streaming emulation, and
single long-poll requests. No protocol logic here; the session decides what to send.

Opening a transport tells two failures apart: ``EdgeUnreachable`` (nothing answers: try the
next edge) and ``TransportRefused`` (the edge answers but not on this transport: try the next
transport on the same edge).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Protocol

import aiohttp
import orjson

from skyrelay.client.errors import ClientError
from skyrelay.protocol.codes import ABNORMAL_CLOSURE, ReplyError
from skyrelay.protocol.protobuf_message import decode, encode, message
from skyrelay.protocol.protobuf_wire import ProtobufError, delimited, read_delimited

# Close code used when a stream ends or a socket drops without a close frame (as WebSocket's
# "abnormal closure"): the client reconnects.
# Largest message a WebSocket receive accepts (the edge's default limit, with room).
MAX_MESSAGE = 1 << 20
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"
PROTOBUF_MEDIA_TYPE = "application/octet-stream"
_EMULATION_REQUEST = message("EmulationRequest")
_REPLY = message("Reply")


class EdgeUnreachable(ClientError):
    """No answer from the edge at all."""


class TransportRefused(ClientError):
    """The edge answered, but this transport is not served or does not work here."""


class TransportClosed(ClientError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Transport(Protocol):
    name: str

    async def send(self, data: bytes) -> None: ...  # pragma: no cover
    async def recv(self) -> bytes: ...  # pragma: no cover
    async def close(self) -> None: ...  # pragma: no cover


_UNREACHABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ServerTimeoutError,
    ConnectionError,
    TimeoutError,
)


class WebSocketTransport:
    """JSON in text frames, or protobuf in binary frames (subprotocol ``centrifuge-protobuf``)."""

    name = "websocket"

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, protobuf: bool) -> None:
        self._ws = ws
        self._protobuf = protobuf

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base: str,
        first: bytes,
        within: float,
        protobuf: bool = False,
    ) -> WebSocketTransport:
        url = base.replace("http", "ws", 1) + "/connection/websocket"
        try:
            ws = await http.ws_connect(
                url,
                protocols=(PROTOBUF_SUBPROTOCOL,) if protobuf else (),
                timeout=aiohttp.ClientWSTimeout(ws_close=within),
                autoping=True,
                max_msg_size=MAX_MESSAGE,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportRefused(f"websocket refused: {exc.status}") from None
        except _UNREACHABLE as exc:
            raise EdgeUnreachable(str(exc) or type(exc).__name__) from None
        if protobuf and ws.protocol != PROTOBUF_SUBPROTOCOL:
            await ws.close()
            raise TransportRefused("the edge does not speak protobuf")
        transport = cls(ws, protobuf)
        await transport.send(first)
        return transport

    async def send(self, data: bytes) -> None:
        try:
            if self._protobuf:
                await self._ws.send_bytes(data)
            else:
                await self._ws.send_str(data.decode())
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise TransportClosed(ABNORMAL_CLOSURE, f"write failed: {exc}") from None

    async def recv(self) -> bytes:
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type is aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        code = self._ws.close_code or ABNORMAL_CLOSURE
        reason = msg.extra if isinstance(msg.extra, str) else ""
        raise TransportClosed(code, reason or "connection closed")

    async def close(self) -> None:
        await self._ws.close()


class HttpStreamTransport:
    """Replies and pushes come down one chunked response, a JSON document per line (protobuf:
    each after its varint length); commands go up by ``POST /emulation`` with the session and
    node the connect reply named."""

    name = "http_stream"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        resp: aiohttp.ClientResponse,
        protobuf: bool = False,
    ):
        self._http = http
        self._base = base
        self._resp = resp
        self._protobuf = protobuf
        self._buffer = bytearray()
        self._session = ""
        self._node = ""

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        base: str,
        first: bytes,
        within: float,
        protobuf: bool = False,
    ) -> HttpStreamTransport:
        media = PROTOBUF_MEDIA_TYPE if protobuf else "application/json"
        try:
            resp = await http.post(
                f"{base}/connection/http_stream",
                data=first,
                headers={"Content-Type": media, "Accept": media},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=within, sock_read=None),
            )
        except _UNREACHABLE as exc:
            raise EdgeUnreachable(str(exc) or type(exc).__name__) from None
        if resp.status != 200:
            resp.release()
            raise TransportRefused(f"http_stream refused: {resp.status}")
        return cls(http, base, resp, protobuf)

    async def send(self, data: bytes) -> None:
        if not self._session:
            raise TransportClosed(ABNORMAL_CLOSURE, "no session yet")
        fields = {"session": self._session, "node": self._node}
        if self._protobuf:
            body = encode(_EMULATION_REQUEST, {**fields, "data": data})
            media = PROTOBUF_MEDIA_TYPE
        else:
            body = orjson.dumps({**fields, "data": data.decode()})
            media = "application/json"
        try:
            async with self._http.post(
                f"{self._base}/emulation", data=body, headers={"Content-Type": media}
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise TransportClosed(ABNORMAL_CLOSURE, f"emulation request failed: {exc}") from None
        if status >= 300:
            raise TransportClosed(ABNORMAL_CLOSURE, f"emulation request answered {status}")

    async def recv(self) -> bytes:
        if self._protobuf:
            return await self._recv_delimited()
        try:
            line = await self._resp.content.readline()
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise TransportClosed(ABNORMAL_CLOSURE, f"stream broke: {exc}") from None
        if not line:
            raise TransportClosed(ABNORMAL_CLOSURE, "stream ended")
        if not self._session and b'"connect"' in line:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                self._learn_session(orjson.loads(line).get("connect") or {})
        return line.rstrip(b"\n")

    async def _recv_delimited(self) -> bytes:
        """The next whole reply, still after its length (the codec reads it so)."""
        while True:
            try:
                found = read_delimited(self._buffer)
            except ProtobufError as exc:
                raise TransportClosed(ABNORMAL_CLOSURE, f"stream broke: {exc}") from None
            if found is not None:
                raw, end = found
                del self._buffer[:end]
                if not self._session:
                    with contextlib.suppress(ProtobufError):
                        self._learn_session(decode(_REPLY, raw).get("connect") or {})
                return delimited(raw)
            try:
                chunk = await self._resp.content.readany()
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise TransportClosed(ABNORMAL_CLOSURE, f"stream broke: {exc}") from None
            if not chunk:
                raise TransportClosed(ABNORMAL_CLOSURE, "stream ended")
            self._buffer += chunk

    def _learn_session(self, result: dict[str, Any]) -> None:
        self._session = str(result.get("session", ""))
        self._node = str(result.get("node", ""))

    async def close(self) -> None:
        self._resp.close()


async def longpoll(
    http: aiohttp.ClientSession, base: str, body: dict[str, Any], within: float
) -> dict[str, Any]:
    """One long-poll request; ``within`` seconds bound the whole request."""
    try:
        async with http.post(
            f"{base}/connection/longpoll",
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=within),
        ) as resp:
            status = resp.status
            raw = await resp.read()
    except _UNREACHABLE as exc:
        raise EdgeUnreachable(str(exc) or type(exc).__name__) from None
    except aiohttp.ClientError as exc:
        raise EdgeUnreachable(str(exc)) from None
    if status in (404, 405):
        raise TransportRefused(f"longpoll refused: {status}")
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TransportRefused(f"longpoll answered {status} without JSON") from None
    if not isinstance(answer, dict):
        raise TransportRefused("longpoll answer is not an object")
    error = answer.get("error")
    if status != 200 or isinstance(error, dict):
        error = error if isinstance(error, dict) else {}
        raise ReplyError.from_body({"message": str(status), **error}, status >= 500)
    return answer


async def probe(http: aiohttp.ClientSession, base: str, within: float) -> float | None:
    """Round-trip time of ``GET /health`` in seconds, or None when it fails."""
    started = time.monotonic()
    try:
        async with http.get(f"{base}/health", timeout=aiohttp.ClientTimeout(total=within)) as resp:
            await resp.read()
            if resp.status != 200:
                return None
    except (aiohttp.ClientError, ConnectionError, TimeoutError):
        return None
    return time.monotonic() - started
