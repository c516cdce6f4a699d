"""The supervisor of a multi-core edge: N worker processes that share the edge's port.

``skyrelay edge --workers N`` runs this instead of serving. It makes a private directory for
the workers' mesh sockets (see ``edge/mesh.py``), starts the workers, prints ``ready`` once
every worker listens, forwards SIGHUP, restarts a worker that dies (with a growing delay) and,
on SIGTERM or SIGINT, stops them all. A worker that dies before the edge was ever ready means a
bad setup (the port is taken, say): the supervisor then stops and exits with code 1.

Workers die with the supervisor even if it is killed (SIGKILL): each asks the kernel for
SIGTERM when its parent goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from skyrelay.config import EdgeConfig, EdgeSettings
from skyrelay.edge.mesh import HEALTH_PATH, worker_socket
from skyrelay.runtime.procs import die_with_parent

log = logging.getLogger("skyrelay.edge.workers")

# How often the supervisor asks a starting worker whether it listens yet, in seconds.
READY_POLL = 0.05


class RestartBackoff:
    """Delay before restarting a worker: doubles after each death, up to ``cap``; a worker
    that ran at least ``cap`` seconds starts over at ``first``. Pure."""

    __slots__ = ("_next", "cap", "first")

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def after(self, uptime: float) -> float:
        """The delay before restarting a worker that died after ``uptime`` seconds."""
        if uptime >= self.cap:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay


@dataclass
class Worker:
    index: int
    backoff: RestartBackoff
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    # Answers on its private socket: it listens, and handles signals.
    listening: bool = False
    watchers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(
        self,
        config_path: str,
        edge: EdgeConfig,
        settings: EdgeSettings,
        count: int,
        log_level: str | None = None,
        name: str = "",
    ) -> None:
        self.config_path = config_path
        self.edge = edge
        # The edge's name in logs, links and ``info`` (``--name``; its id by default).
        self.name = name or edge.id
        self.settings = settings
        self.count = count
        self.log_level = log_level
        self.directory = Path()
        self.workers = [
            Worker(
                i, RestartBackoff(settings.worker_restart_delay, settings.worker_restart_max_delay)
            )
            for i in range(count)
        ]
        self._stop = asyncio.Event()
        self._announced = False
        self._failed = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        # mkdtemp makes the directory 0700: only this user reaches the workers' sockets.
        self.directory = Path(tempfile.mkdtemp(prefix=f"skyrelay-{self.name}-"))
        try:
            for worker in self.workers:
                await self._start(worker)
            await self._stop.wait()
            await self._terminate()
        finally:
            for worker in self.workers:
                for task in worker.watchers:
                    task.cancel()
            shutil.rmtree(self.directory, ignore_errors=True)
        log.info("edge %s stopped", self.name)
        return 1 if self._failed else 0

    def _command(self, index: int) -> list[str]:
        command = [sys.executable, "-m", "skyrelay", "edge", "--config", self.config_path]
        command += ["--id", self.edge.id, "--workers", str(self.count), "--worker", str(index)]
        command += ["--mesh", str(self.directory), "--name", self.name]
        if self.log_level:
            command += ["--log-level", self.log_level]
        return command

    async def _start(self, worker: Worker) -> None:
        worker.proc = await asyncio.create_subprocess_exec(
            *self._command(worker.index),
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        worker.started = asyncio.get_running_loop().time()
        worker.listening = False
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)
        worker.watchers = [
            asyncio.create_task(self._watch(worker, worker.proc)),
            asyncio.create_task(self._until_listening(worker, worker.proc)),
        ]

    async def _watch(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._stop.is_set():
            return
        if not self._announced:
            log.error("worker %d exited with code %d during start-up; stopping", worker.index, code)
            self._failed = True
            self._stop.set()
            return
        uptime = asyncio.get_running_loop().time() - worker.started
        delay = worker.backoff.after(uptime)
        log.warning(
            "worker %d (pid %d) exited with code %d after %.1f s; restarting it in %.1f s",
            worker.index,
            proc.pid,
            code,
            uptime,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        if not self._stop.is_set():
            await self._start(worker)

    async def _until_listening(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        connector = aiohttp.UnixConnector(
            path=str(worker_socket(self.directory, worker.index)), force_close=True
        )
        timeout = aiohttp.ClientTimeout(total=self.settings.worker_call_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            while proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with client.get(f"http://worker{HEALTH_PATH}") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(READY_POLL)
            else:
                return
        worker.listening = True
        if not self._announced and all(w.listening for w in self.workers):
            self._announced = True
            log.info("edge %s: %d workers listening", self.name, self.count)
            scheme = "https" if self.edge.tls_cert else "http"
            print(
                f"ready {scheme}://{self.edge.host}:{self.edge.port}", file=sys.stderr, flush=True
            )

    def _reload(self) -> None:
        # A worker still starting reads the new config anyway, and may not handle SIGHUP yet.
        for worker in self.workers:
            if worker.alive and worker.listening and worker.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGHUP)
        log.info("SIGHUP forwarded to the workers")

    async def _terminate(self) -> None:
        """SIGTERM every worker (they drain), then SIGKILL what is left after the timeout."""
        procs = [w.proc for w in self.workers if w.alive and w.proc is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        waits = asyncio.gather(*(proc.wait() for proc in procs))
        try:
            await asyncio.wait_for(waits, self.settings.worker_stop_timeout)
        except TimeoutError:
            for proc in procs:
                if proc.returncode is None:
                    log.warning("worker (pid %d) did not stop in time; killing it", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(proc.wait() for proc in procs))
