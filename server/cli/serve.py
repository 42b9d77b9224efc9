"""`hermes serve`: run the co-simulation gRPC server until SIGTERM/SIGINT, then drain and exit 0.

On start it prints one line `hermes serve listening on HOST:PORT` on stdout
(the real port when --port 0 was given), which scripts and tests wait for.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
import threading
from typing import Any

from .. import jsonlog
from ..config import ServerConfig

TOKEN_ENV = "HERMES_TOKEN"


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host, port=args.port, metrics_port=args.metrics_port, max_sessions=args.max_sessions,
        max_requests_per_session=args.max_requests_per_session, max_message_mb=args.max_message_mb,
        max_events_per_reply=args.max_events_per_reply, max_snapshots_per_session=args.max_snapshots,
        workers=args.workers, token=args.token or os.environ.get(TOKEN_ENV) or None,
        drain_grace_s=args.drain_grace, log_level=args.log_level, drain_mode=args.drain_mode,
        shard_id=validate_shard_id(default_shard_id() if args.shard_id is None else args.shard_id),
    )


def default_shard_id() -> str:
    """The host name's first label with characters outside the shard alphabet replaced."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:40] or "shard"


def validate_shard_id(name: str) -> str:
    """A shard id is the first part of session ids: the session-id characters, no dot."""
    if not SHARD_RE.fullmatch(name):
        raise SystemExit(f"hermes serve: --shard-id: {name!r} must be 1-40 characters of "
                         "letters, digits, '-' and '_'")
    return name


def start_metrics(config: ServerConfig) -> Any:
    """The Prometheus exporter as an observer (None without --metrics-port)."""
    if config.metrics_port is None:
        return None
    from ..metrics.exporter import start_metrics_server

    return start_metrics_server(config.metrics_port, config.host)


SHARD_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
SWITCH_INTERVAL_S = 0.001  # Python's default is 0.005


def serve(config: ServerConfig, stop: threading.Event | None = None) -> int:
    """Run a server until `stop` is set (by SIGTERM/SIGINT when run from the CLI)."""
    from ..api.app import HermesServer

    jsonlog.setup(config.log_level)
    # simulation work holds the GIL in long stretches; hand it over more often so health
    # checks, metric scrapes and other sessions' calls are answered during a long Advance
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    exporter = start_metrics(config)
    server = HermesServer(config, observers=[exporter] if exporter else [])
    server.start()
    print(f"hermes serve listening on {server.address}", flush=True)
    if exporter is not None:
        print(f"hermes serve metrics on http://{config.host}:{exporter.port}/metrics", flush=True)
    stop = stop or threading.Event()
    while not stop.wait(0.5):
        pass
    server.drain()
    if exporter is not None:
        exporter.stop()
    return 0


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return serve(config_from_args(args), stop=stop)
    except OSError as exc:
        print(f"hermes serve: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    d = ServerConfig()
    p = sub.add_parser("serve", help="run the gRPC co-simulation server",
                       description="Run the HERMES co-simulation gRPC server (no session open at start).")
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port (0 picks a free one; default %(default)s)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="open sessions (0: unlimited)")
    p.add_argument("--max-requests-per-session", type=int, default=d.max_requests_per_session,
                   help="requests per session (0: unlimited)")
    p.add_argument("--max-message-mb", type=int, default=d.max_message_mb, help="largest gRPC message, MiB")
    p.add_argument("--max-events-per-reply", type=int, default=d.max_events_per_reply,
                   help="cap on simulator events per Advance reply (0: none)")
    p.add_argument("--max-snapshots", type=int, default=d.max_snapshots_per_session,
                   help="snapshots held per session (0: unlimited)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="gRPC handler threads: concurrent calls plus open Session streams; "
                        "beyond that calls get RESOURCE_EXHAUSTED")
    p.add_argument("--token", default=None,
                   help=f"require 'authorization: Bearer TOKEN' on every call but health (or set {TOKEN_ENV})")
    p.add_argument("--drain-grace", type=float, default=d.drain_grace_s,
                   help="seconds to let in-flight calls finish on SIGTERM")
    p.add_argument("--shard-id", default=None,
                   help="this replica's shard name: server-chosen session ids become SHARD.LOCAL and calls "
                        "for another shard's sessions get FAILED_PRECONDITION naming the owner "
                        "(default: the host name, which is the pod name in a StatefulSet)")
    p.add_argument("--drain-mode", choices=["stop", "handoff"], default=d.drain_mode,
                   help="on SIGTERM: 'stop' refuses every call at once; 'handoff' keeps serving open "
                        "sessions (no new ones) for the grace period so clients can finish or re-home "
                        "(default %(default)s)")
    p.add_argument("--log-level", default=d.log_level, choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_run)
