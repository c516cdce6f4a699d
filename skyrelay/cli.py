"""The ``skyrelay`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from skyrelay.config import TOKEN_SECRET_ENV, ConfigError, load_config

# Lifetime of the demo token `skyrelay up` prints, in seconds.
DEMO_TOKEN_TTL = 24 * 3600
# Sample channels used by `ring show` and `ring plan` to measure placement.
RING_SAMPLE = 10_000
# Seconds `ring show` waits for each shard's status.
RING_PROBE_TIMEOUT = 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skyrelay", description="Skyrelay real-time relay")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run a whole local cluster")
    up.add_argument("--origins", type=int, default=3)
    up.add_argument("--edges", type=int, default=2)
    up.add_argument("--replication", type=int, default=3)
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--edge-workers", type=int, default=1, help="worker processes per edge")
    up.add_argument(
        "--data-dir",
        default="skyrelay-data",
        help="where origins keep their channels, one folder per shard (default: ./skyrelay-data)",
    )
    up.add_argument(
        "--durability",
        choices=("memory", "disk", "fsync"),
        default="disk",
        help="what an ack promises (default: disk; memory keeps nothing on disk)",
    )

    origin = sub.add_parser("origin", help="run one origin shard")
    origin.add_argument("--config", required=True)
    origin.add_argument("--id", required=True)
    origin.add_argument("--log-level", default=None, help="default: log.level in the config")

    edge = sub.add_parser("edge", help="run one edge relay")
    edge.add_argument("--config", required=True)
    edge.add_argument("--id", default=None, help="edge id in the config (default: the first)")
    edge.add_argument("--name", help="its name in logs, links and info (default: its id)")
    edge.add_argument("--log-level", default=None, help="default: log.level in the config")
    edge.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: edge.workers)"
    )
    # Set by the supervisor on the workers it starts: index, and the mesh's private directory.
    edge.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    edge.add_argument("--mesh", default=None, help=argparse.SUPPRESS)

    token = sub.add_parser("token", help="mint a development token")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds; 0 = no expiry")
    token.add_argument("--channel", default=None, help="make a subscription token")
    token.add_argument("--admin", action="store_true", help="make an admin token (status page)")

    from skyrelay.client.cli import add_commands  # noqa: PLC0415

    add_commands(sub)

    bench = sub.add_parser("bench", help="run a benchmark scenario", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)

    ring = sub.add_parser("ring", help="placement of channels on shards")
    ring.add_argument("action", choices=("show", "plan"))
    ring.add_argument("--config", required=True)
    ring.add_argument("--add", default=None, help="plan: shard id[=weight][@zone] to add")
    ring.add_argument("--remove", default=None, help="plan: shard id to remove")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up(args)
        if args.command == "origin":
            return _serve_origin(args)
        if args.command == "edge":
            return _serve_edge(args)
        if args.command == "token":
            return _token(args)
        if args.command == "ring":
            return _ring(args)
        if args.command in ("sub", "pub"):
            from skyrelay.client.cli import run  # noqa: PLC0415

            return run(args)
        if args.command == "bench":
            from skyrelay.benchmarks.cli import main as bench  # noqa: PLC0415

            return bench(args.args)
    except ConfigError as exc:
        print(f"skyrelay: config error: {exc}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover


def _serve_origin(args: argparse.Namespace) -> int:
    from skyrelay.origin.app import run_origin  # noqa: PLC0415 - only the command that runs it pays
    from skyrelay.runtime.logs import configure  # noqa: PLC0415
    from skyrelay.runtime.serve import install_uvloop  # noqa: PLC0415

    config = load_config(args.config)
    config.shard(args.id)
    configure(args.id, level=args.log_level or config.log.level, fmt=config.log.format)
    install_uvloop()
    asyncio.run(run_origin(args.config, args.id))
    return 0


def _serve_edge(args: argparse.Namespace) -> int:
    from skyrelay.edge.app import run_edge  # noqa: PLC0415
    from skyrelay.edge.mesh import worker_node_id  # noqa: PLC0415
    from skyrelay.runtime.logs import configure  # noqa: PLC0415
    from skyrelay.runtime.serve import install_uvloop  # noqa: PLC0415

    config = load_config(args.config)
    edge = config.edge_by_id(args.id)
    workers = config.edge.workers if args.workers is None else args.workers
    if workers < 1:
        print("skyrelay: --workers must be at least 1", file=sys.stderr)
        return 2
    level = args.log_level or config.log.level
    name = args.name or edge.id
    if args.worker is not None:
        if args.mesh is None or not 0 <= args.worker < workers:
            print("skyrelay: --worker is set by the edge supervisor only", file=sys.stderr)
            return 2
        configure(worker_node_id(name, args.worker), level=level, fmt=config.log.format)
        install_uvloop()
        asyncio.run(run_edge(args.config, edge.id, (args.worker, workers, args.mesh), name))
        return 0
    configure(name, level=level, fmt=config.log.format)
    if workers > 1:
        from skyrelay.edge.workers import Supervisor  # noqa: PLC0415

        supervisor = Supervisor(args.config, edge, config.edge, workers, args.log_level, name)
        return asyncio.run(supervisor.run())
    install_uvloop()
    asyncio.run(run_edge(args.config, args.id, name=name))
    return 0


def _token(args: argparse.Namespace) -> int:
    from skyrelay.tokens import mint_token  # noqa: PLC0415

    secret = os.environ.get(TOKEN_SECRET_ENV)
    if not secret:
        print(f"skyrelay: set {TOKEN_SECRET_ENV} to the cluster's token secret", file=sys.stderr)
        return 2
    extra: dict[str, object] = {}
    if args.channel:
        extra["channel"] = args.channel
    if args.admin:
        extra["admin"] = True
    print(mint_token(secret, args.sub, now=time.time(), ttl=args.ttl or None, extra=extra or None))
    return 0


def _up(args: argparse.Namespace) -> int:
    from skyrelay.testing.cluster import ClusterSpec, LocalCluster, cluster_secrets  # noqa: PLC0415
    from skyrelay.tokens import mint_token  # noqa: PLC0415

    for name in ("origins", "edges", "replication", "edge_workers"):
        if getattr(args, name) < 1:
            print(f"skyrelay: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    data = Path(args.data_dir).absolute() if args.durability != "memory" else None
    spec = ClusterSpec(
        args.origins,
        args.edges,
        args.replication,
        args.port,
        edge_workers=args.edge_workers,
        data_dir=str(data / "{shard}") if data is not None else "",
        durability=args.durability,
    )
    token_secret, api_key, generated = cluster_secrets(dict(os.environ))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="skyrelay-up-") as workdir:
        cluster = LocalCluster(spec, Path(workdir), token_secret, api_key)
        cluster.start()
        try:
            print("\nSkyrelay local cluster is up.")
            for i in range(spec.edges):
                workers = f"   ({spec.edge_workers} workers)" if spec.edge_workers > 1 else ""
                print(
                    f"  edge e{i}    {cluster.ws_url(i)}   API {cluster.edge_url(i)}/api{workers}"
                )
            for i in range(spec.origins):
                print(f"  origin o{i}  {cluster.origin_url(i)}")
            print(f"  status      {cluster.edge_url(0)}/status#key={api_key}")
            print(f"  config      {cluster.config_path}")
            if data is not None:
                kept = "kept across runs; delete it to start empty"
                print(f"  data        {data} ({args.durability}, {kept})")
            else:
                print("  data        in memory only (--durability memory)")
            origin_note = " (generated)" if generated else " (from the environment)"
            print(f"  {TOKEN_SECRET_ENV}={token_secret}{origin_note}")
            print(f"  SKYRELAY_API_KEY={api_key}")
            demo = mint_token(token_secret, "demo", now=time.time(), ttl=DEMO_TOKEN_TTL)
            print(f"  demo token (user demo, 24 h): {demo}")
            print("Press Ctrl+C to stop.", flush=True)
            while not stop.wait(0.5):
                for name, proc in cluster.processes.items():
                    if proc.poll() is not None and not getattr(proc, "_reported", False):
                        print(f"skyrelay: {name} exited with code {proc.returncode}", flush=True)
                        proc._reported = True  # type: ignore[attr-defined]
        finally:
            cluster.stop()
            print("Skyrelay local cluster stopped.", flush=True)
    return 0


def _shard_state(url: str, tls: ssl.SSLContext | None) -> str:
    """up (leading N channels) / down, asked of the running shard."""
    import json  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(
            f"{url}/status", timeout=RING_PROBE_TIMEOUT, context=tls
        ) as resp:
            status = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return "down"
    leading = sum(1 for c in status.get("channels", {}).values() if c.get("role") == "leader")
    return f"up, leading {leading} channels"


def _ring(args: argparse.Namespace) -> int:
    from skyrelay.ring import Member, Ring, moved_channels  # noqa: PLC0415

    config = load_config(args.config)
    members = [Member(s.id, s.weight, s.zone) for s in config.shards]
    ring = Ring(members, config.replication)
    sample = [f"channel-{i}" for i in range(RING_SAMPLE)]
    if args.action == "show":
        from skyrelay.runtime.tls import shard_client_ssl  # noqa: PLC0415

        verify = shard_client_ssl(config)
        tls = verify if isinstance(verify, ssl.SSLContext) else None
        counts = dict.fromkeys(ring.member_ids(), 0)
        for ch in sample:
            counts[ring.owner(ch)] += 1
        print(f"replication {ring.replication}, min_copies {config.effective_min_copies}")
        for shard in config.shards:
            share = counts[shard.id] / RING_SAMPLE
            state = _shard_state(shard.url, tls)
            print(
                f"  {shard.id:<12} {shard.url:<28} weight {shard.weight:<3} "
                f"{'zone ' + shard.zone + '  ' if shard.zone else ''}"
                f"primary for {share:6.1%} of channels   {state}"
            )
        return 0
    if bool(args.add) == bool(args.remove):
        print("skyrelay: ring plan needs exactly one of --add or --remove", file=sys.stderr)
        return 2
    if args.add:
        spec, _, zone = args.add.partition("@")
        ident, _, weight = spec.partition("=")
        after = [*members, Member(ident, int(weight or 1), zone)]
    else:
        after = [m for m in members if m.id != args.remove]
        if len(after) == len(members):
            print(f"skyrelay: no shard {args.remove!r}", file=sys.stderr)
            return 2
    new_ring = Ring(after, config.replication)
    sets = moved_channels(ring, new_ring, sample)
    primaries = sum(1 for ch in sample if ring.owner(ch) != new_ring.owner(ch))
    size = max(len(after), len(members))
    share = primaries / RING_SAMPLE
    print(
        f"{primaries} of {RING_SAMPLE} sample channels change primary "
        f"({share:.1%}; ideal 1/{size} = {1 / size:.1%})"
    )
    print(
        f"{sets} of {RING_SAMPLE} change replica set ({sets / RING_SAMPLE:.1%}): their history "
        f"is copied to the new members"
    )
    return 0
