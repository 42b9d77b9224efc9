"""`hermes fleet SPEC`: serve the spec's LLM clients over HTTP as vLLM-like instances, paced by the wall clock.

Prints one line per listener (`hermes fleet CLIENT MODEL URL`), with `--gateway-port` one
`hermes gateway MODEL URL` for the listener whose calls run the spec's own pipeline, with
`--router-port` one `hermes router HOST:PORT session fleet` for the external router's gRPC listener,
then `hermes fleet ready`, and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from sim_engine import SpecError

from .. import jsonlog
from .serve import ConfigError, read_secret
from .simulate import parse_overrides

ROUTER_TOKEN_ENV = "HERMES_ROUTER_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_ROUTER_TIMEOUT_MS = 60_000

log = logging.getLogger("hermes.fleet")
READY = "hermes fleet ready"


@dataclass
class StartLines:
    """What `hermes fleet` prints as it starts (read back by the benchmarks and tests that run it)."""

    instances: dict[str, str] = field(default_factory=dict)  # client id -> listener URL, in client order
    gateway: str = ""  # the gateway's URL ("" without --gateway-port)
    router: str = ""  # the router listener's host:port ("" without --router-port)


def read_start_lines(lines: Iterable[str]) -> StartLines:
    """The listeners `hermes fleet` printed, read up to its ready line."""
    out = StartLines()
    for line in lines:
        if line.startswith(READY):
            break
        w = line.split()
        if w[:2] == ["hermes", "fleet"] and len(w) == 5:
            out.instances[w[2]] = w[4]
        elif w[:2] == ["hermes", "gateway"]:
            out.gateway = w[3]
        elif w[:2] == ["hermes", "router"]:
            out.router = w[2]
    return out


async def _serve(args: argparse.Namespace) -> int:
    from ..fleet.app import Fleet, fleet_spec
    from ..fleet.endpoints import endpoint_entries, write_endpoints
    from ..fleet.requests import Limits

    spec = fleet_spec(args.spec, parse_overrides(args.set or []), workload=args.workload)
    limits = Limits(max_body_bytes=args.max_body_mb << 20, max_n=args.max_n, max_tokens=args.max_tokens)
    fleet = Fleet(spec, time_scale=args.time_scale, host=args.host, base_port=args.base_port,
                  load_format=args.load_format, limits=limits, max_inflight=args.max_inflight,
                  gateway_port=args.gateway_port, router_port=args.router_port,
                  router_timeout_s=args.router_timeout_ms / 1000, router_token=args.router_token,
                  router_tls=(args.router_tls_cert, args.router_tls_key) if args.router_tls_cert else None)
    instances = await fleet.start()
    # the modules, the spec and the engine built so far live as long as the process: keep them out of
    # the collector's full passes, which would otherwise walk them all and stall every stream
    gc.freeze()
    for inst in instances:
        print(f"hermes fleet {inst.client_id} {inst.model} {inst.url}", flush=True)
    if fleet.gateway is not None:
        print(f"hermes gateway {fleet.gateway.model} {fleet.gateway.url}", flush=True)
    if fleet.router is not None:
        print(f"hermes router {args.host}:{fleet.router_port} session fleet", flush=True)
    if args.endpoints_file:
        write_endpoints(args.endpoints_file, endpoint_entries(instances, spec, args.host))
    print(f"{READY}: {len(instances)} instances, time scale {args.time_scale:g}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fleet.stop()
    return 0


def _not_bad_http(record: logging.LogRecord) -> bool:
    """Drop aiohttp's tracebacks for malformed requests (they get a 400): sglang-router probes each
    worker for HTTP/2 (gRPC) first, which would log one per worker at start."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (exc is not None and type(exc).__name__ == "BadHttpMessage")


def _check_router_tls(args: argparse.Namespace) -> None:
    if bool(args.router_tls_cert) != bool(args.router_tls_key):
        raise ConfigError("--router-tls-cert and --router-tls-key go together")
    for flag, path in (("--router-tls-cert", args.router_tls_cert), ("--router-tls-key", args.router_tls_key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag}: no file {path}")
    if args.router_tls_cert and args.router_port is None:
        raise ConfigError("--router-tls-cert: there is no router listener (add --router-port)")
    if args.router_port is not None and not args.router_tls_cert and args.host not in LOOPBACK:
        log.warning("the router listener on %s is not encrypted (--router-tls-cert/--router-tls-key): its "
                    "bearer token and decisions cross the network in clear", args.host)


def _run(args: argparse.Namespace) -> int:
    jsonlog.setup(args.log_level)
    logging.getLogger("aiohttp.server").addFilter(_not_bad_http)
    logging.getLogger("hermes.fleet").setLevel(args.log_level.upper())
    if not args.time_scale > 0:
        print("hermes fleet: --time-scale must be > 0", file=sys.stderr)
        return 2
    for flag, port in (("--gateway-port", args.gateway_port), ("--router-port", args.router_port)):
        if port is not None and not 0 <= port <= 65535:
            print(f"hermes fleet: {flag} must be between 0 and 65535", file=sys.stderr)
            return 2
    if not 0 < args.router_timeout_ms <= MAX_ROUTER_TIMEOUT_MS:
        print(f"hermes fleet: --router-timeout-ms must be > 0 and <= {MAX_ROUTER_TIMEOUT_MS}", file=sys.stderr)
        return 2
    try:
        args.router_token = read_secret(args.router_token_file, ROUTER_TOKEN_ENV, "--router-token-file")
        _check_router_tls(args)
    except ConfigError as e:
        print(f"hermes fleet: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args))
    except SpecError as e:
        print(f"hermes fleet: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hermes fleet: {e}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="serve the spec's LLM clients as OpenAI/vLLM-like HTTP instances",
                       description="Run the spec's cluster against the wall clock with one OpenAI-compatible, "
                                   "vLLM-shaped HTTP listener per LLM client (docs/FLEET.md).")
    p.add_argument("spec", help="spec file, preset name or YAML text")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--base-port", type=int, default=8100,
                   help="first listener's port; the others follow in client order (0: free ports)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="simulated seconds per wall second (default %(default)s)")
    p.add_argument("--endpoints-file", default=None,
                   help="write the listeners here (.yaml/.json: endpoint list; else one URL per line)")
    p.add_argument("--load-format", choices=["vllm", "sglang"], default="vllm",
                   help="/get_load body: vllm-router's {\"load\": N} or sglang-router's per-rank list")
    p.add_argument("--workload", action="store_true",
                   help="also run the spec's workload generator (its requests go through the spec's router)")
    p.add_argument("--gateway-port", type=int, default=None,
                   help="also open an OpenAI-compatible gateway whose calls run the spec's own pipeline and "
                        "router (0: a free port; off by default)")
    p.add_argument("--router-port", type=int, default=None,
                   help="also open a gRPC listener where an external router (client_sdk, session 'fleet') answers "
                        "the routing decisions of a spec whose router is external (0: a free port; off by default)")
    p.add_argument("--router-timeout-ms", type=float, default=500.0,
                   help="wall time a held decision waits for the external router before the built-in round robin "
                        "answers it (default %(default)s)")
    p.add_argument("--router-token-file", default=None,
                   help=f"bearer token the router listener asks for (or set {ROUTER_TOKEN_ENV}; default: none)")
    p.add_argument("--router-tls-cert", default=None, help="PEM certificate chain: serve the router listener over TLS")
    p.add_argument("--router-tls-key", default=None, help="PEM private key for --router-tls-cert")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec field (repeatable)")
    p.add_argument("--max-inflight", type=int, default=4096, help="requests per instance before 429")
    p.add_argument("--max-body-mb", type=int, default=8, help="largest request body, MiB")
    p.add_argument("--max-n", type=int, default=16, help="largest n (choices per prompt)")
    p.add_argument("--max-tokens", type=int, default=1 << 20, help="largest max_tokens accepted")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_run)
