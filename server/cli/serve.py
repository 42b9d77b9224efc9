"""`hermes serve`: run the co-simulation gRPC server until SIGTERM/SIGINT, then drain and exit 0.

On start it prints one line `hermes serve listening on HOST:PORT` on stdout
(the real port when --port 0 was given), which scripts and tests wait for.

Secrets never come from argv (visible to every user in `ps`): the bearer token
is read from `--token-file` or the HERMES_TOKEN environment variable, the
/metrics token from `--metrics-token-file` or HERMES_METRICS_TOKEN (default:
the gRPC token).
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
METRICS_TOKEN_ENV = "HERMES_METRICS_TOKEN"


class ConfigError(ValueError):
    """A flag or file the operator gave is unusable (exit 2 with one line)."""


def read_secret(path: str | None, env: str, what: str) -> str | None:
    """A token from a file (first line, surrounding whitespace dropped) or else the environment."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"{what}: {path} is empty")
        return token
    return os.environ.get(env, "").strip() or None


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    if args.removed_token is not None:
        raise ConfigError(f"--token is no longer accepted (argv shows in `ps`): use --token-file FILE or {TOKEN_ENV}")
    token = read_secret(args.token_file, TOKEN_ENV, "--token-file")
    metrics_token = read_secret(args.metrics_token_file, METRICS_TOKEN_ENV, "--metrics-token-file") or token
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag}: no file {path}")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise ConfigError(f"--data-dir: no directory {args.data_dir}")
    for flag, value in (("--session-idle-timeout", args.session_idle_timeout),
                        ("--max-call-seconds", args.max_call_seconds), ("--session-memory-mb", args.session_memory_mb),
                        ("--max-spec-kb", args.max_spec_kb), ("--max-request-mb", args.max_request_mb)):
        if value < 0:
            raise ConfigError(f"{flag}: must be >= 0 (0: no limit)")
    return ServerConfig(
        host=args.host, port=args.port, metrics_port=args.metrics_port, max_sessions=args.max_sessions,
        max_requests_per_session=args.max_requests_per_session, max_message_mb=args.max_message_mb,
        max_request_mb=args.max_request_mb,
        max_events_per_reply=args.max_events_per_reply, max_snapshots_per_session=args.max_snapshots,
        max_requests_per_call=args.max_requests_per_call, max_spec_kb=args.max_spec_kb,
        session_memory_mb=args.session_memory_mb, session_idle_timeout_s=args.session_idle_timeout,
        max_call_seconds=args.max_call_seconds, workers=args.workers, token=token, metrics_token=metrics_token,
        metrics_aggregate=args.metrics_aggregate,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
        data_dir=os.path.realpath(args.data_dir) if args.data_dir else None,
        drain_grace_s=args.drain_grace, log_level=args.log_level, test_gate_dir=args.test_gate_dir,
        drain_mode=args.drain_mode,
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
    """The Prometheus exporter as an observer (None without --metrics-port).

    With a metrics token, /metrics asks for it; `--metrics-aggregate` drops the session
    label (series bounded by clients, not sessions: for servers with many short sessions).
    """
    if config.metrics_port is None:
        return None
    from ..metrics.exporter import start_metrics_server

    return start_metrics_server(config.metrics_port, config.host, token=config.metrics_token,
                                aggregate_sessions=config.metrics_aggregate)


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
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"hermes serve: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(config, stop=stop)
    except ConfigError as exc:
        print(f"hermes serve: {exc}", file=sys.stderr)
        return 2
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
    p.add_argument("--metrics-aggregate", action="store_true",
                   help="sum series over sessions (no session label): bounded series for many short sessions")
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="open sessions (0: unlimited)")
    p.add_argument("--max-requests-per-session", type=int, default=d.max_requests_per_session,
                   help="requests per session (0: unlimited)")
    p.add_argument("--max-message-mb", type=int, default=d.max_message_mb, help="largest gRPC message, MiB")
    p.add_argument("--max-request-mb", type=int, default=d.max_request_mb,
                   help="largest request message, MiB (default %(default)s; replies: --max-message-mb)")
    p.add_argument("--max-events-per-reply", type=int, default=d.max_events_per_reply,
                   help="cap on simulator events per Advance reply (0: none)")
    p.add_argument("--max-snapshots", type=int, default=d.max_snapshots_per_session,
                   help="snapshots held per session (0: unlimited)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="gRPC handler threads: concurrent calls plus open Session streams; "
                        "beyond that calls get RESOURCE_EXHAUSTED")
    p.add_argument("--max-requests-per-call", type=int, default=d.max_requests_per_call,
                   help="requests in one Inject call (0: only the per-session limit)")
    p.add_argument("--max-spec-kb", type=int, default=d.max_spec_kb,
                   help="largest spec (YAML text or document) CreateSession accepts, KiB (default %(default)s)")
    p.add_argument("--session-memory-mb", type=int, default=d.session_memory_mb,
                   help="refuse a session whose estimated memory exceeds this, MiB (0: no cap; default %(default)s)")
    p.add_argument("--session-idle-timeout", type=float, default=d.session_idle_timeout_s,
                   help="close a session after this many seconds without a call (0: never; default %(default)s)")
    p.add_argument("--max-call-seconds", type=float, default=d.max_call_seconds,
                   help="wall budget of one call: a longer Advance returns INTERRUPTED (0: none; "
                        "default %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help="the only directory a spec may name data files (traces) in; default: bundled data only")
    p.add_argument("--token-file", default=None,
                   help="require 'authorization: Bearer TOKEN' on every call but health, TOKEN being the "
                        f"first line of this file (or set {TOKEN_ENV}; never on the command line)")
    # without it argparse would read `--token X` as an abbreviation of --token-file
    p.add_argument("--token", dest="removed_token", default=None, help=argparse.SUPPRESS)
    p.add_argument("--metrics-token-file", default=None,
                   help=f"bearer token for /metrics (or set {METRICS_TOKEN_ENV}; default: the gRPC token)")
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve gRPC over TLS")
    p.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    p.add_argument("--test-gate-dir", default=None, help=argparse.SUPPRESS)  # tests only: server/api/testgate.py
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
