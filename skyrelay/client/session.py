"""The client's session core, without I/O: commands out, replies and pushes in, subscription
states and stream positions. It outlives connections: after a drop, ``start`` builds the
connect and the recovering subscribes from where each subscription stood.

The driver feeds it what the transport read (``receive`` or ``receive_longpoll``), writes
what ``take_outgoing`` returns, and acts on the events it gets back.

What belongs here: every decision of the client protocol on the client side (what to send
after a connect, when to resubscribe, which publications to deliver). What never does:
sockets, asyncio, timers, the edge's code; protocol numbers come from ``skyrelay.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from skyrelay.client import json_codec
from skyrelay.protocol.codec import ClientCodec
from skyrelay.protocol.codes import ReplyError, UnsubscribeCode, resubscribes, retry_subscribe
from skyrelay.protocol.messages import Ping, Push, Reply

# The wire format the session speaks: JSON (a second format implements the same interface).


class SubStatus(Enum):
    WANTED = "wanted"  # asked for, not sent on this connection yet
    SUBSCRIBING = "subscribing"  # subscribe sent, reply awaited
    SUBSCRIBED = "subscribed"


@dataclass(slots=True)
class SubState:
    channel: str
    status: SubStatus = SubStatus.WANTED
    epoch: str = ""
    # Offset of the last publication received (not necessarily consumed by the app yet).
    offset: int = 0
    # True once epoch/offset are known: subscribes then recover from them.
    positioned: bool = False
    # Id of the subscribe command in flight.
    command: int = 0


# Events the session returns to its driver.


@dataclass(frozen=True, slots=True)
class ConnectOk:
    client_id: str
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    error: ReplyError


@dataclass(frozen=True, slots=True)
class Deliver:
    """A publication for the app, in order, never twice."""

    channel: str
    epoch: str
    pub: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Subscribed:
    channel: str
    recovered: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """Recovery failed: the stream goes on from (epoch, offset), publications were missed."""

    channel: str
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class RetrySubscribe:
    """A subscribe failed for now; call ``subscribe_wanted`` after a delay."""

    channel: str
    error: ReplyError


@dataclass(frozen=True, slots=True)
class Ended:
    """The subscription is over for good."""

    channel: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Done:
    """A command other than connect and subscribe was answered."""

    id: int
    result: dict[str, Any]
    error: ReplyError | None


@dataclass(frozen=True, slots=True)
class ServerDisconnect:
    code: int
    reason: str


Event = (
    ConnectOk
    | ConnectFailed
    | Deliver
    | Subscribed
    | Lost
    | RetrySubscribe
    | Ended
    | Done
    | ServerDisconnect
)


class Session:
    def __init__(self, name: str = "skyrelay-python", codec: ClientCodec = json_codec) -> None:
        self.name = name
        # The wire format: JSON, or protobuf.
        self.codec = codec
        self.subs: dict[str, SubState] = {}
        self.connected = False
        self.pong = False
        # Seconds between the edge's pings, from the connect reply (0 = none advertised).
        self.ping = 0
        self._next_id = 0
        # id -> (method, channel) of every command awaiting its reply on this connection.
        self._pending: dict[int, tuple[str, str]] = {}
        self._out: list[dict[str, Any]] = []

    # The app's side.

    def subscribe(self, channel: str, epoch: str = "", offset: int | None = None) -> None:
        """Follow ``channel``, from (epoch, offset) when given, else from now."""
        sub = SubState(channel)
        if offset is not None:
            sub.epoch, sub.offset, sub.positioned = epoch, offset, True
        self.subs[channel] = sub
        if self.connected:
            self._send_subscribe(sub)

    def unsubscribe(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is not None and self.connected and sub.status is not SubStatus.WANTED:
            self._command("unsubscribe", {"channel": channel})

    def publish(self, channel: str, data: Any, idempotency_key: str = "") -> int:
        """Queue a publish command; its ``Done`` event carries the returned id."""
        params: dict[str, Any] = {"channel": channel, "data": data}
        if idempotency_key:
            params["idempotency_key"] = idempotency_key
        return self._command("publish", params, channel)

    def command(self, method: str, params: dict[str, Any]) -> int:
        """Any other command (history, presence, rpc...); answered by a ``Done`` event."""
        return self._command(method, params)

    def subscribe_wanted(self) -> None:
        """Send the subscribes that wait (after a ``RetrySubscribe``)."""
        if self.connected:
            for sub in self.subs.values():
                if sub.status is SubStatus.WANTED:
                    self._send_subscribe(sub)

    def position(self, channel: str) -> tuple[str, int] | None:
        sub = self.subs.get(channel)
        return (sub.epoch, sub.offset) if sub is not None and sub.positioned else None

    # The connection's side.

    def start(self, token: str) -> bytes:
        """The first message of a new connection: connect, then every subscription."""
        self._pending.clear()
        self._out.clear()
        self.connected = False
        params: dict[str, Any] = {"name": self.name}
        if token:
            params["token"] = token
        self._command("connect", params)
        for sub in self.subs.values():
            self._send_subscribe(sub)
        return self._flush()

    def connection_lost(self) -> list[int]:
        """The transport is gone: every subscription waits for the next connection. Returns
        the ids of the commands that will never be answered."""
        self.connected = False
        lost = [i for i, (method, _) in self._pending.items() if method not in _OWN]
        self._pending.clear()
        self._out.clear()
        for sub in self.subs.values():
            sub.status, sub.command = SubStatus.WANTED, 0
        return lost

    def has_outgoing(self) -> bool:
        return bool(self._out)

    def take_outgoing(self) -> bytes:
        """What to write now (empty when nothing)."""
        return self._flush() if self._out else b""

    def receive(self, data: bytes | str) -> list[Event]:
        """Everything one transport message carried; may raise ``ProtocolError``."""
        events: list[Event] = []
        for message in self.codec.decode(data):
            if isinstance(message, Ping):
                if self.pong:
                    self._out.append({})
            elif isinstance(message, Push):
                self._on_push(message, events)
            else:
                self._on_reply(message, events)
        return events

    # Long-poll: no commands, the positions travel in every request.

    def longpoll_channels(self) -> dict[str, dict[str, Any]]:
        return {
            ch: ({"offset": sub.offset, "epoch": sub.epoch} if sub.positioned else {})
            for ch, sub in self.subs.items()
        }

    def receive_longpoll(self, answer: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        positions = answer.get("positions") or {}
        for channel in answer.get("unrecovered") or []:
            sub = self.subs.get(channel)
            where = positions.get(channel) or {}
            if sub is not None:
                sub.epoch, sub.offset = str(where.get("epoch", "")), int(where.get("offset", 0))
                sub.positioned = True
                events.append(Lost(channel, sub.epoch, sub.offset))
        for pub in answer.get("publications") or []:
            sub = self.subs.get(str(pub.get("channel", "")))
            if sub is None:
                continue
            offset = int(pub.get("offset", 0))
            if offset and sub.positioned and offset <= sub.offset:
                continue
            if offset:
                sub.offset = offset
            epoch = str((positions.get(sub.channel) or {}).get("epoch", sub.epoch))
            body = {k: v for k, v in pub.items() if k != "channel"}
            events.append(Deliver(sub.channel, epoch, body))
        for channel, where in positions.items():
            sub = self.subs.get(channel)
            if sub is None:
                continue
            if sub.status is not SubStatus.SUBSCRIBED:
                sub.status = SubStatus.SUBSCRIBED
                events.append(Subscribed(channel, sub.positioned))
            sub.epoch = str(where.get("epoch", ""))
            sub.offset = max(sub.offset, int(where.get("offset", 0)))
            sub.positioned = True
        return events

    # Internals.

    def _command(self, method: str, params: dict[str, Any], channel: str = "") -> int:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        self._pending[self._next_id] = (method, channel)
        self._out.append({"id": self._next_id, method: params})
        return self._next_id

    def _send_subscribe(self, sub: SubState) -> None:
        params: dict[str, Any] = {"channel": sub.channel, "recoverable": True, "flag": 0}
        if sub.positioned:
            params.update(recover=True, offset=sub.offset, epoch=sub.epoch)
        sub.status = SubStatus.SUBSCRIBING
        sub.command = self._command("subscribe", params, sub.channel)

    def _flush(self) -> bytes:
        data = self.codec.encode(self._out)
        self._out.clear()
        return data

    def _on_reply(self, reply: Reply, events: list[Event]) -> None:
        method, channel = self._pending.pop(reply.id, ("", ""))
        if method == "connect":
            if reply.error is not None:
                events.append(ConnectFailed(reply.error))
                return
            self.connected = True
            self.pong = bool(reply.result.get("pong"))
            self.ping = int(reply.result.get("ping", 0) or 0)
            events.append(ConnectOk(str(reply.result.get("client", "")), reply.result))
            self.subscribe_wanted()  # those asked for while the connect was on its way
        elif method == "subscribe":
            self._on_subscribed(channel, reply, events)
        elif method and method not in _OWN:
            events.append(Done(reply.id, reply.result, reply.error))

    def _on_subscribed(self, channel: str, reply: Reply, events: list[Event]) -> None:
        sub = self.subs.get(channel)
        if sub is None or sub.command != reply.id:
            if sub is None and reply.error is None:
                self._command("unsubscribe", {"channel": channel})  # dropped meanwhile
            return
        sub.command = 0
        error = reply.error
        if error is not None:
            if retry_subscribe(error):
                sub.status = SubStatus.WANTED
                events.append(RetrySubscribe(channel, error))
            else:
                del self.subs[channel]
                events.append(Ended(channel, error.code, error.message))
            return
        result = reply.result
        sub.status = SubStatus.SUBSCRIBED
        recovering = bool(result.get("was_recovering"))
        recovered = bool(result.get("recovered"))
        if result.get("positioned") or result.get("recoverable"):
            epoch, offset = str(result.get("epoch", "")), int(result.get("offset", 0))
            if recovering and not recovered:
                sub.epoch, sub.offset, sub.positioned = epoch, offset, True
                events.append(Lost(channel, epoch, offset))
            elif not recovering:
                sub.epoch, sub.offset, sub.positioned = epoch, offset, True
            else:
                sub.epoch = epoch
        events.append(Subscribed(channel, recovered))
        for pub in result.get("publications") or []:
            self._deliver(sub, pub, events)

    def _on_push(self, push: Push, events: list[Event]) -> None:
        if push.kind == "disconnect":
            events.append(
                ServerDisconnect(int(push.body.get("code", 0)), str(push.body.get("reason", "")))
            )
            return
        sub = self.subs.get(push.channel)
        if sub is None:
            return
        if push.kind == "pub":
            if sub.status is SubStatus.SUBSCRIBED:
                self._deliver(sub, push.body, events)
        elif push.kind == "unsubscribe":
            code = int(push.body.get("code", UnsubscribeCode.INSUFFICIENT_STATE))
            if resubscribes(code):
                self._send_subscribe(sub)
            else:
                del self.subs[push.channel]
                events.append(Ended(push.channel, code, str(push.body.get("reason", ""))))

    def _deliver(self, sub: SubState, pub: dict[str, Any], events: list[Event]) -> None:
        offset = int(pub.get("offset", 0))
        if offset and sub.positioned:
            if offset <= sub.offset:
                return  # already delivered
            if offset > sub.offset + 1:
                # A hole: ask for the stream again from where we stand; the recovery fills it.
                self._command("unsubscribe", {"channel": sub.channel})
                self._send_subscribe(sub)
                return
        if offset:
            sub.offset = offset
        events.append(Deliver(sub.channel, sub.epoch, pub))


# Commands the session answers itself; the others belong to a caller waiting on them.
_OWN = frozenset({"connect", "subscribe", "unsubscribe"})
