"""``skyrelay sub`` and ``skyrelay pub``: the command-line client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from skyrelay.client.client import Client, Since
from skyrelay.client.crypto import Keyring, key_from_text
from skyrelay.client.errors import ClientError, ReplyError, SubscriptionEnded
from skyrelay.client.events import (
    ClientEvent,
    Connected,
    DecryptionFailed,
    Disconnected,
    Publication,
    PublishFailed,
    Unrecovered,
)
from skyrelay.client.settings import TRANSPORT_ORDER, ClientSettings
from skyrelay.config import TOKEN_SECRET_ENV

EDGES_ENV = "SKYRELAY_EDGES"
TOKEN_ENV = "SKYRELAY_TOKEN"
KEYS_ENV = "SKYRELAY_E2E_KEYS"
# Lifetime of the tokens the command mints itself from the token secret, in seconds.
MINTED_TOKEN_TTL = 3600
EXIT_QUEUED = 3


def add_commands(sub: Any) -> None:
    """Add ``sub`` and ``pub`` to the ``skyrelay`` parser."""
    s = sub.add_parser("sub", help="follow channels and print publications as JSON lines")
    _common(s)
    s.add_argument("channels", nargs="+", metavar="CHANNEL")
    s.add_argument(
        "--since",
        default=None,
        help="OFFSET or EPOCH:OFFSET to start after (0 = the whole history); "
        "default: the position saved in --state, else now",
    )
    s.add_argument("--count", type=int, default=0, help="exit after this many publications")

    p = sub.add_parser("pub", help="publish (queued in --state while offline, sent once)")
    _common(p)
    p.add_argument("channel", nargs="?", metavar="CHANNEL")
    p.add_argument("data", nargs="*", metavar="DATA", help="JSON values; none: one per stdin line")
    p.add_argument(
        "--no-wait", action="store_true", help="queue in --state and exit without sending"
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--edge",
        action="append",
        default=[],
        help=f"edge URL, repeatable (default: ${EDGES_ENV}, comma-separated)",
    )
    parser.add_argument("--token", default=None, help=f"connection token (default: ${TOKEN_ENV})")
    parser.add_argument(
        "--user", default="cli", help=f"user of the token minted from ${TOKEN_SECRET_ENV}"
    )
    parser.add_argument("--state", default=None, help="SQLite file: positions and outbox")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="CHANNEL:KID=KEY",
        help=f"end-to-end key (base64), repeatable, last one seals (also ${KEYS_ENV})",
    )
    parser.add_argument(
        "--transport",
        action="append",
        choices=TRANSPORT_ORDER,
        help="transports to use, in order (default: all)",
    )
    parser.add_argument(
        "--protocol",
        choices=("json", "protobuf"),
        default="json",
        help="wire format on websocket and http_stream (default: json)",
    )
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds; 0 = no limit")
    parser.add_argument("--quiet", action="store_true", help="no connection events on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "sub":
            args.since = parse_since(args.since)
        client = _client(args)
    except ValueError as exc:
        print(f"skyrelay {args.command}: {exc}", file=sys.stderr)
        return 2
    main = _sub(client, args) if args.command == "sub" else _pub(client, args)
    try:
        return asyncio.run(main)
    except (ClientError, ReplyError) as exc:
        print(f"skyrelay {args.command}: {exc}", file=sys.stderr)
        return 1


def _client(args: argparse.Namespace) -> Client:
    edges = args.edge or [e for e in os.environ.get(EDGES_ENV, "").split(",") if e]
    if not edges:
        raise ValueError(f"give --edge URL (or set {EDGES_ENV})")
    token = args.token or os.environ.get(TOKEN_ENV, "")
    secret = os.environ.get(TOKEN_SECRET_ENV, "")
    get_token = None
    if not token and secret:
        get_token = _minter(secret, args.user)
    keys = _keyring([*args.key, *filter(None, os.environ.get(KEYS_ENV, "").split(","))])
    return Client(
        edges,
        token=token,
        get_token=get_token,
        state=args.state,
        keys=keys,
        transports=args.transport or TRANSPORT_ORDER,
        protocol=args.protocol,
        settings=ClientSettings(name="skyrelay-cli"),
        on_event=None if args.quiet else _report,
    )


def _minter(secret: str, user: str) -> Callable[[], Any]:
    from skyrelay.tokens import mint_token  # noqa: PLC0415 - only when minting

    async def mint() -> str:
        return mint_token(secret, user, now=time.time(), ttl=MINTED_TOKEN_TTL)

    return mint


def _keyring(specs: list[str]) -> Keyring | None:
    if not specs:
        return None
    keys = Keyring()
    for spec in specs:
        channel, sep, rest = spec.rpartition(":")
        kid, eq, text = rest.partition("=")
        if not sep or not eq or not channel or not kid:
            raise ValueError(f"--key {spec!r}: expected CHANNEL:KID=KEY")
        keys.add(channel, kid, key_from_text(text))
    return keys


def _report(event: ClientEvent) -> None:
    if isinstance(event, Connected):
        print(f"connected to {event.edge} over {event.transport}", file=sys.stderr, flush=True)
    elif isinstance(event, Disconnected):
        again = "reconnecting" if event.reconnect else "giving up"
        print(f"disconnected ({event.code} {event.reason}), {again}", file=sys.stderr, flush=True)
    elif isinstance(event, PublishFailed):
        print(f"publication refused: {event.error}", file=sys.stderr, flush=True)


def parse_since(text: str | None) -> Since:
    if text is None:
        return None
    epoch, sep, offset = text.rpartition(":")
    try:
        value = int(offset)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected OFFSET or EPOCH:OFFSET") from None
    return (epoch, value) if sep else value


async def _stopped_by_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _until(work: Any, limit: float) -> bool:
    """Run ``work`` until it ends, a signal, or ``limit`` seconds (0 = no limit); True if it
    ended by itself."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(_stopped_by_signal())
    done, _ = await asyncio.wait((task, stop), timeout=limit or None, return_when="FIRST_COMPLETED")
    for t in (task, stop):
        t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stop
    if task in done:
        task.result()  # raise what it raised
        return True
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _sub(client: Client, args: argparse.Namespace) -> int:
    async with client:
        subs = [await client.subscribe(ch, since=args.since) for ch in args.channels]
        printed = 0
        done = asyncio.Event()

        async def follow(sub: Any) -> None:
            nonlocal printed
            async for event in sub:
                _print_event(event)
                if isinstance(event, Publication):
                    printed += 1
                    if args.count and printed >= args.count:
                        sub.commit()
                        done.set()
                        return

        async def all_subs() -> None:
            tasks = [asyncio.ensure_future(follow(sub)) for sub in subs]
            waiter = asyncio.ensure_future(done.wait())
            await asyncio.wait([*tasks, waiter], return_when="FIRST_COMPLETED")
            for t in [*tasks, waiter]:
                t.cancel()
            for t in tasks:
                if t.done() and not t.cancelled():
                    t.result()  # raise what ended it

        try:
            ended = await _until(all_subs(), args.timeout)
        except SubscriptionEnded as exc:
            print(f"skyrelay sub: {exc}", file=sys.stderr)
            return 1
        return 0 if ended or not args.count else 1


def _print_event(event: Any) -> None:
    if isinstance(event, Publication):
        line = {"channel": event.channel, "offset": event.offset, "data": event.data}
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.flush()
    elif isinstance(event, DecryptionFailed):
        print(f"{event.channel} offset {event.offset}: {event.error.reason}", file=sys.stderr)
    elif isinstance(event, Unrecovered):
        print(f"{event.channel}: missed publications, now at {event.offset}", file=sys.stderr)


async def _pub(client: Client, args: argparse.Namespace) -> int:
    values = [_value(d) for d in args.data]
    if args.channel and not values:
        values = [_value(line) for line in sys.stdin.read().splitlines() if line.strip()]
    async with client:
        for value in values:
            await client.publish(args.channel, value)
        if values:
            print(f"queued {len(values)}", file=sys.stderr, flush=True)
        if args.no_wait:
            return 0
        sent = await _until(client.flush(), args.timeout)
        left = await client.queued()
        if not sent or left:
            where = f" in {args.state}; run again to send them" if args.state else " (lost)"
            print(f"skyrelay pub: {left} publications still queued{where}", file=sys.stderr)
            return EXIT_QUEUED
        return 0


def _value(text: str) -> Any:
    """JSON when it parses, else the text as a string."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
