"""What an external router over gRPC (`hermes fleet --router-port`) costs a gateway call.

Two `hermes fleet hetero-demo --gateway-port 0` processes at time scale 1 (the spec's router is
external): the baseline answers the routing decisions with the built-in round robin; the other
opens `--router-port` and the SDK's unchanged `RoundRobinScheduler` (the same policy) answers
them from this process over loopback. Each fleet gets the same sequence of gateway calls
(one at a time, `max_tokens` 4), and then a burst of concurrent calls.

The router's round trip is simulated time (a request is routed at the wall time its answer
arrives), so it shows in each call's latency: the headline is the mean latency with the
external router over the baseline's, from the same run. Also printed: the mean difference in
ms, the burst's wall time and both fleets' `hermes_fleet_router_*` counters.

    PYTHONPATH=. python benchmarks/fleet_router.py            # ~20 s
    PYTHONPATH=. python benchmarks/fleet_router.py --smoke    # seconds; asserts nothing about timing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client_sdk import Client, HermesError, RoundRobinScheduler  # noqa: E402
from server.cli.fleet import read_start_lines  # noqa: E402


def start_fleet(router: bool) -> tuple[subprocess.Popen, str, str]:
    extra = ["--router-port", "0"] if router else []
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "fleet", "hetero-demo", "--base-port", "0",
                             "--gateway-port", "0", "--log-level", "error", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    start = read_start_lines(proc.stdout)  # type: ignore[arg-type]
    return proc, start.gateway, start.router


def call(gateway: str) -> float:
    body = json.dumps({"prompt": "hello " * 20, "max_tokens": 4}).encode()
    req = urllib.request.Request(gateway + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] == 4
    return time.perf_counter() - t0


def counters(gateway: str) -> dict[str, float]:
    with urllib.request.urlopen(gateway + "/metrics", timeout=30) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("hermes_fleet_router_")}


def measure(router: bool, calls: int, burst: int) -> tuple[list[float], float, dict[str, float]]:
    proc, gateway, target = start_fleet(router)
    try:
        if router:
            session = Client(target, timeout=30).attach("fleet")

            def drive() -> None:
                try:
                    RoundRobinScheduler().run(session)
                except HermesError:
                    pass  # the fleet stopped

            threading.Thread(target=drive, daemon=True).start()
            time.sleep(0.2)
        for _ in range(3):
            call(gateway)  # warm-up
        latencies = [call(gateway) for _ in range(calls)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(call, [gateway] * burst))
        return latencies, time.perf_counter() - t0, counters(gateway)
    finally:
        proc.terminate()
        proc.wait(15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--burst", type=int, default=200)
    p.add_argument("--smoke", action="store_true", help="10 calls, a burst of 20")
    args = p.parse_args(argv)
    calls, burst = (10, 20) if args.smoke else (args.calls, args.burst)
    base, base_burst, base_counts = measure(False, calls, burst)
    ext, ext_burst, ext_counts = measure(True, calls, burst)
    for name, lat, wall, counts in (("built-in round robin", base, base_burst, base_counts),
                                    ("SDK RoundRobinScheduler over gRPC", ext, ext_burst, ext_counts)):
        print(f"{name}: mean {statistics.mean(lat) * 1e3:.2f} ms, median {statistics.median(lat) * 1e3:.2f} ms, "
              f"p90 {statistics.quantiles(lat, n=10)[-1] * 1e3:.2f} ms per call; burst of {burst}: "
              f"{wall:.2f} s; {counts or 'no router counters'}")
    print(f"external_router_added_ms={(statistics.mean(ext) - statistics.mean(base)) * 1e3:.2f}")
    print(f"external_router_latency_ratio={statistics.mean(ext) / statistics.mean(base):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
