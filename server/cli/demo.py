"""`hermes demo`: the main job on a built-in default, in one command.

Starts a co-simulation server in this process, creates a session on a
heterogeneous preset (H100 + A100 + L40S serving Llama-3.1-8B, Poisson
workload) switched to external routing, and drives it with an external
scheduler from client_sdk over the gRPC stream, exactly as a separate program
would. Shows progress, where the metrics are, and the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from ..config import ServerConfig

DEMO_PRESET = "hetero-poisson"


def _progress_bar(total: int) -> tuple[Any, Any]:
    from tqdm import tqdm

    from hermes.v1 import common_pb2

    bar = tqdm(total=total, unit="req", desc="external scheduler", file=sys.stderr, mininterval=0.2)
    ended = (common_pb2.EVENT_KIND_COMPLETED, common_pb2.EVENT_KIND_DROPPED)

    def update(reply: Any, decided: int) -> None:
        bar.update(sum(1 for e in reply.events if e.kind in ended))
        bar.set_postfix_str(f"sim {reply.time_ns / 1e9:.1f}s, {decided} decisions", refresh=False)

    return bar, update


def run(args: argparse.Namespace) -> int:
    from client_sdk import Client, LeastKvScheduler, RoundRobinScheduler

    from .. import jsonlog
    from ..api.app import HermesServer
    from .serve import start_metrics
    from .simulate import BadInput, check_output_paths, format_summary

    try:  # before the server starts and the run takes its time
        check_output_paths({"--json": args.json})
    except BadInput as e:
        print(f"hermes demo: {e}", file=sys.stderr)
        return 2

    config = ServerConfig(host=args.host, port=args.port, metrics_port=args.metrics_port, log_level="warning")
    jsonlog.setup(config.log_level)
    exporter = start_metrics(config)
    server = HermesServer(config, observers=[exporter] if exporter else [])
    server.start()
    scheduler = {"least_kv": LeastKvScheduler, "round_robin": RoundRobinScheduler}[args.policy]()
    print(f"HERMES demo: server on {server.address}; preset {DEMO_PRESET!r} "
          f"({args.requests} requests, seed {args.seed}), routed by an external {args.policy} scheduler "
          f"(client_sdk) over the Session stream")
    if exporter is not None:
        print(f"metrics: http://{config.host}:{exporter.port}/metrics")
    overrides = {"router": "external", "workload.num_requests": args.requests}
    t0 = time.perf_counter()
    with Client(server.address) as client:
        session = client.create_session(DEMO_PRESET, seed=args.seed, overrides=overrides, stream=True)
        bar, update = _progress_bar(args.requests)
        try:
            summary = scheduler.run(session, progress=update)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        print(format_summary(summary, wall))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
            print(f"summary JSON: {args.json}")
        if args.keep_serving:
            print(f"session {session.id} stays open; serving on {server.address} until Ctrl-C")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        session.close()
    server.drain(5.0)
    if exporter is not None:
        exporter.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a server and an external scheduler against it (the main job)",
                       description=__doc__.splitlines()[0] + " " + " ".join(__doc__.splitlines()[2:6]))
    p.add_argument("--requests", type=int, default=1000, help="requests in the workload (default %(default)s)")
    p.add_argument("--policy", choices=["least_kv", "round_robin"], default="least_kv",
                   help="the external scheduler (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
    p.add_argument("--metrics-port", type=int, default=None, help="also serve Prometheus /metrics on this port")
    p.add_argument("--json", metavar="OUT", help="write the summary JSON here")
    p.add_argument("--keep-serving", action="store_true",
                   help="keep the server (and the session's metrics) up after the run, until Ctrl-C")
    p.set_defaults(func=run)
