"""Separate hosts on one machine: a network namespace per host, joined by veth pairs that the
test creates, cuts and heals. Needs root and iproute2's ``ip``.

Every host has one address (on its loopback, in a private range that exists only inside these
namespaces) and a point-to-point veth to each host it may talk to, so a partition is just some
links set down, in both namespaces. Names carry a per-run prefix, so parallel runs never clash.

The test process stays in its own namespace and reaches a host's ports through a forwarder: a
``FaultProxy`` listening on loopback whose outgoing sockets are created inside the host's
namespace (a socket belongs to the namespace it was created in).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import secrets
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skyrelay.testing.faultproxy import FaultProxy, Streams

_CLONE_NEWNET = 0x40000000
# Seconds any one `ip` command may take.
IP_TIMEOUT = 10.0


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need iproute2's `ip`"
    name = f"skr-probe-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.decode(errors='replace').strip()}"
    try:
        veth = ["ip", "-n", name, "link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"]
        made = subprocess.run(veth, capture_output=True, check=False)
        if made.returncode != 0:
            return f"creating a veth pair failed: {made.stderr.decode(errors='replace').strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def require_namespaces() -> None:
    """Skip when namespaces are unavailable, saying why; in CI (CI=true) fail instead."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run)")
    pytest.skip(reason)


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, timeout=IP_TIMEOUT, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"ip {' '.join(args)}: {message}")


@dataclass
class Host:
    name: str
    netns: str
    address: str
    # One thread that lives in the namespace, to create sockets there.
    executor: ThreadPoolExecutor | None = None

    @property
    def run_prefix(self) -> list[str]:
        """Run a command on this host."""
        return ["ip", "netns", "exec", self.netns]


def _enter(netns: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
    finally:
        os.close(fd)


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


@dataclass
class Network:
    """Hosts and the links between them; ``close()`` removes everything it made."""

    subnet: str = "10.213.0"
    prefix: str = field(default_factory=lambda: f"skr{secrets.token_hex(3)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    links: set[frozenset[str]] = field(default_factory=set)
    forwarders: list[FaultProxy] = field(default_factory=list)

    def add_host(self, name: str, number: int) -> Host:
        netns = f"{self.prefix}-{name}"
        ip("netns", "add", netns)
        host = Host(name, netns, f"{self.subnet}.{number}")
        self.hosts[name] = host
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"{host.address}/32", "dev", "lo")
        return host

    def connect(self, a: str, b: str) -> None:
        """A veth pair between hosts ``a`` and ``b``, each end with a route to the other."""
        ha, hb = self.hosts[a], self.hosts[b]
        ip(
            "link", "add", "name", f"to-{b}", "netns", ha.netns, "type", "veth",
            "peer", "name", f"to-{a}", "netns", hb.netns,
        )  # fmt: skip
        for here, there in ((ha, hb), (hb, ha)):
            dev = f"to-{there.name}"
            peer = f"{there.address}/32"
            ip("-n", here.netns, "addr", "add", f"{here.address}/32", "peer", peer, "dev", dev)
            ip("-n", here.netns, "link", "set", dev, "up")
        self.links.add(frozenset((a, b)))

    def _set(self, a: str, b: str, state: str) -> None:
        ip("-n", self.hosts[a].netns, "link", "set", f"to-{b}", state)
        ip("-n", self.hosts[b].netns, "link", "set", f"to-{a}", state)

    def cut(self, a: str, b: str) -> None:
        """Packets between ``a`` and ``b`` go nowhere (links down at both ends)."""
        self._set(a, b, "down")

    def heal(self, a: str, b: str) -> None:
        self._set(a, b, "up")

    def cluster_hosts(
        self, origins: tuple[str, ...], edges: tuple[str, ...]
    ) -> dict[str, list[str]]:
        """A host per origin (addresses .10 on) and per edge (.20 on), every origin linked to
        every other one and to every edge; returns each host's command prefix."""
        for i, name in enumerate(origins):
            self.add_host(name, 10 + i)
        for i, name in enumerate(edges):
            self.add_host(name, 20 + i)
        for a, b in itertools.combinations(origins, 2):
            self.connect(a, b)
        for edge, origin in itertools.product(edges, origins):
            self.connect(edge, origin)
        return {name: host.run_prefix for name, host in self.hosts.items()}

    def name_hosts(self, names: dict[str, str]) -> None:
        """Resolve ``names`` (a DNS name -> a host's name) on every host, as a cluster's DNS
        would: ``ip netns exec`` mounts ``/etc/netns/<netns>/hosts`` over ``/etc/hosts``."""
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.hosts[host].address} {name}" for name, host in names.items()]
        for host in self.hosts.values():
            directory = Path("/etc/netns") / host.netns
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts").write_text("\n".join(lines) + "\n")

    async def forward(self, name: str, port: int) -> FaultProxy:
        """A loopback port in this namespace that reaches ``port`` on host ``name``."""
        host = self.hosts[name]
        if host.executor is None:
            host.executor = ThreadPoolExecutor(1, initializer=_enter, initargs=(host.netns,))
        executor = host.executor

        async def dial() -> Streams:
            loop = asyncio.get_running_loop()
            sock = await loop.run_in_executor(executor, _new_socket)
            try:
                await loop.sock_connect(sock, (host.address, port))
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_connection(sock=sock)

        proxy = await FaultProxy(host.address, port, dial=dial).start()
        self.forwarders.append(proxy)
        return proxy

    async def close(self) -> None:
        for proxy in self.forwarders:
            with contextlib.suppress(Exception):
                await proxy.close()
        self.forwarders.clear()
        await asyncio.to_thread(self.remove)

    def remove(self) -> None:
        """Delete every namespace made here; the veths go with them."""
        for host in self.hosts.values():
            if host.executor is not None:
                host.executor.shutdown(wait=False)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / host.netns, ignore_errors=True)
        self.hosts.clear()
