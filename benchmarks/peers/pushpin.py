"""Run Debian's Pushpin (1.36) as a benchmark peer: config, SSE origin and publish bodies.

Subscribers open ``GET http://127.0.0.1:<http_port>/<any path>``; Pushpin proxies it to the
origin below, which answers with ``Grip-Hold: stream`` and ``Grip-Channel: bench``, so Pushpin
holds the SSE stream open on channel "bench". A benchmark publishes with
``POST http://127.0.0.1:<5561 + port_offset>/publish/`` and body ``publish_body(data, count)``.

    python -m skyrelay.benchmarks.peers.pushpin origin --port P
    python -m skyrelay.benchmarks.peers.pushpin run --workdir DIR --http-port H --origin-port P \
        [--port-offset N]

The publish endpoint rejects bodies over 1,000,000 bytes (``push_in_http_max_body_size``) with
400, about 12,000 short items; ``publish_bodies`` splits a larger batch into bodies under that.

Limits of Pushpin 1.36 itself that a benchmark must respect (none of them is configurable):
- Each held stream queues at most 100 published items it cannot write yet and silently drops
  the rest (logged only at --verbose as "publish queue at max, dropping"). One large body is
  delivered whole, but a second body sent while the first is still being written loses items,
  so pace publishes by deliveries, or count the drops as Pushpin's result.
- Concurrent new connections beyond a few hundred get "502 Error while proxying to origin" (the
  proxy's queue to zurl is full) or "500 Accept service unavailable"; connect gradually and
  retry those statuses.

Pushpin's runner also binds ZeroMQ TCP ports 5560 (PULL publish), 5562 (SUB publish) and 5563
(handler commands), each plus ``port_offset``; everything else is IPC under ``<workdir>/run``.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from skyrelay.benchmarks.peers import run_async

HOST = "127.0.0.1"  # Loopback only: benchmarks never listen on any other address.
CHANNEL = "bench"
BACKLOG = 4096  # Subscribers connect in bursts; the default backlog (128) drops SYNs.
BASE_CONF = Path("/etc/pushpin/pushpin.conf")
PUSHPIN_BIN = "pushpin"
PUBLISH_PORT = 5561  # Pushpin's HTTP publish port before port_offset.
# Every TCP port Pushpin binds besides http_port, before port_offset (for free-port checks).
ZMQ_PORTS = (5560, 5561, 5562, 5563)
MAX_PUBLISH_BYTES = 1_000_000  # Pushpin's default push_in_http_max_body_size.


def publish_url(port_offset: int = 0) -> str:
    """The HTTP publish endpoint of the Pushpin started with ``port_offset``."""
    return f"http://{HOST}:{PUBLISH_PORT + port_offset}/publish/"


def publish_body(data: str, count: int) -> bytes:
    """A Pushpin publish body with ``count`` items on channel "bench", each one SSE event.

    Each line of ``data`` becomes one ``data:`` line, so multi-line data stays one event.
    """
    content = "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
    item = {"channel": CHANNEL, "formats": {"http-stream": {"content": content}}}
    return json.dumps({"items": [item] * count}).encode()


def publish_bodies(data: str, count: int, max_bytes: int = MAX_PUBLISH_BYTES) -> list[bytes]:
    """``count`` items as few publish bodies as fit under ``max_bytes`` each (one POST each)."""
    one = len(publish_body(data, 1))
    item = len(publish_body(data, 2)) - one  # Bytes each further item adds.
    per_body = max(1, 1 + (max_bytes - one) // item)
    return [publish_body(data, min(per_body, count - i)) for i in range(0, count, per_body)]


def write_config(workdir: Path, http_port: int, origin_port: int, port_offset: int = 0) -> Path:
    """Write ``<workdir>/pushpin.conf`` and its routes file; return the config's path.

    Derived from Debian's /etc/pushpin/pushpin.conf with the changes needed to run it from a
    private directory beside other instances: its own rundir and logdir, loopback-only client
    port, zurl started by the runner (Debian leaves it out of ``services``) with IPC specs under
    that rundir (Debian points them at /var/run/zurl, which only a packaged zurl service would
    create), and the handler's rate limit off (by default it throttles to 2,500 deliveries/s and
    drops past a 25,000 message queue).
    """
    workdir = workdir.resolve()
    (workdir / "run").mkdir(parents=True, exist_ok=True)
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    # No interpolation: the file uses {rundir}-style placeholders that Pushpin expands itself.
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]  # Keep keys as written.
    with BASE_CONF.open() as f:
        conf.read_file(f)
    conf["global"]["rundir"] = str(workdir / "run")
    conf["global"]["port_offset"] = str(port_offset)
    conf["runner"]["services"] = "condure,zurl,pushpin-proxy,pushpin-handler"
    conf["runner"]["http_port"] = f"{HOST}:{http_port}"
    conf["runner"]["logdir"] = str(workdir / "log")
    conf["proxy"]["zurl_out_specs"] = "ipc://{rundir}/{ipc_prefix}zurl-in"
    conf["proxy"]["zurl_out_stream_specs"] = "ipc://{rundir}/{ipc_prefix}zurl-in-stream"
    conf["proxy"]["zurl_in_specs"] = "ipc://{rundir}/{ipc_prefix}zurl-out"
    conf["proxy"]["debug"] = "false"
    conf["proxy"]["routesfile"] = "routes"  # Relative to the config file, so in workdir.
    conf["handler"]["message_rate"] = "0"
    conf["handler"]["message_hwm"] = "0"
    path = workdir / "pushpin.conf"
    with path.open("w") as f:
        conf.write(f, space_around_delimiters=False)
    (workdir / "routes").write_text(f"* {HOST}:{origin_port}\n")
    return path


def start_pushpin(
    workdir: Path, http_port: int, origin_port: int, port_offset: int = 0
) -> subprocess.Popen[bytes]:
    """Write the config and start Pushpin's runner; its output goes to ``<workdir>/pushpin.log``.

    Stop it with ``stop_pushpin`` (SIGTERM to the runner stops condure, zurl, proxy and
    handler). It runs in its own process group so a stuck runner can be killed with its children.
    Start the origin first, then call ``wait_pushpin_ready`` (it probes through the origin).
    """
    config = write_config(workdir, http_port, origin_port, port_offset)
    log = (workdir / "pushpin.log").open("ab")
    try:
        return subprocess.Popen(
            [PUSHPIN_BIN, "--config", str(config), "--merge-output"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()  # The child keeps its own descriptor.


def stop_pushpin(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the runner and wait; if it hangs, SIGKILL its own process group."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # The group start_pushpin created, nothing else.
        proc.wait(timeout)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _probe(http_port: int, path: str) -> int | None:
    """Status of one GET through Pushpin (headers only; the held stream is closed at once)."""
    conn = http.client.HTTPConnection(HOST, http_port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:  # Refused, reset or timed out: not ready yet.
        return None
    finally:
        conn.close()


def wait_pushpin_ready(
    proc: subprocess.Popen[bytes],
    http_port: int,
    port_offset: int = 0,
    timeout: float = 20.0,
    probe_path: str = "/__ready",
) -> None:
    """Block until Pushpin serves a stream end to end; raise if it exits or stalls.

    Open ports are not enough: for ~100 ms after start the proxy answers
    "500 Accept service unavailable" while its ZeroMQ links to the handler connect. So this also
    GETs ``probe_path`` through Pushpin until the origin's hold comes back 200; start the origin
    first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pushpin exited with {proc.returncode} before it was ready")
        if (
            _port_open(http_port)
            and _port_open(PUBLISH_PORT + port_offset)
            and _probe(http_port, probe_path) == 200
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"pushpin not serving on {http_port} within {timeout}s")


def ports_free(port_offset: int) -> bool:
    """Whether Pushpin's ZeroMQ/publish ports for ``port_offset`` are free on loopback."""
    for port in ZMQ_PORTS:
        with socket.socket() as s:
            # Like the servers themselves: a port held only by TIME_WAIT leftovers is usable.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port + port_offset))
            except OSError:
                return False
    return True


# --- SSE origin ---------------------------------------------------------------------------


async def _hold(request: web.Request) -> web.Response:
    """Tell Pushpin to hold this response as a stream on channel "bench"."""
    return web.Response(
        body=b":ok\n\n",
        headers={
            "Content-Type": "text/event-stream",
            "Grip-Hold": "stream",
            "Grip-Channel": CHANNEL,
        },
    )


def make_origin_app() -> web.Application:
    """The origin: any GET path answers with the GRIP stream-hold instructions."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", _hold)
    return app


async def serve_origin(port: int) -> None:
    """Serve the origin on 127.0.0.1:``port`` until cancelled; print "ready" to stderr."""
    runner = web.AppRunner(make_origin_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port, backlog=BACKLOG).start()
        print("ready", file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # Until SIGTERM/SIGINT ends the process.
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pushpin peer helpers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    origin = sub.add_parser("origin", help="serve the GRIP SSE origin")
    origin.add_argument("--port", type=int, required=True)
    run = sub.add_parser("run", help="run Pushpin in the foreground until Ctrl-C/SIGTERM")
    run.add_argument("--workdir", type=Path, required=True)
    run.add_argument("--http-port", type=int, required=True)
    run.add_argument("--origin-port", type=int, required=True)
    run.add_argument("--port-offset", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "origin":
        run_async(serve_origin(args.port))
        return
    proc = start_pushpin(args.workdir, args.http_port, args.origin_port, args.port_offset)
    # SIGTERM unwinds like Ctrl-C, so ``finally`` stops the runner. Stopping inside the handler
    # would deadlock: the interrupted ``proc.wait()`` holds the lock a nested wait needs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        wait_pushpin_ready(proc, args.http_port, args.port_offset)
        print("ready", file=sys.stderr, flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_pushpin(proc)


if __name__ == "__main__":
    main()
