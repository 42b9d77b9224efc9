"""Two external schedulers written with the HERMES SDK, driving a session on a running server.

    hermes serve --port 50051 &
    PYTHONPATH=. python examples/external_scheduler.py --target 127.0.0.1:50051 --policy least_kv

The session uses a preset with its own workload, switched to external routing:
every request's routing decision comes to this program. It prints the summary JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client_sdk import Client, LeastKvScheduler, RoundRobinScheduler  # noqa: E402
from client_sdk.scheduler import ExternalScheduler  # noqa: E402

POLICIES: dict[str, type[ExternalScheduler]] = {"round_robin": RoundRobinScheduler, "least_kv": LeastKvScheduler}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT of a hermes server")
    p.add_argument("--policy", choices=sorted(POLICIES), default="round_robin")
    p.add_argument("--preset", default="hetero-poisson", help="spec preset with a workload")
    p.add_argument("--requests", type=int, default=100, help="workload.num_requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token", default=None, help="bearer token, if the server requires one")
    p.add_argument("--stream", action="store_true", help="drive the session over the bidirectional stream")
    args = p.parse_args(argv)

    overrides = {"router": "external", "workload.num_requests": args.requests}
    with Client(args.target, token=args.token) as client:
        with client.create_session(args.preset, seed=args.seed, overrides=overrides, stream=args.stream) as s:
            summary = POLICIES[args.policy]().run(s)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
