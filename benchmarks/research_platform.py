"""Research platform speed: RL decisions per second, and sweep simulations per minute.

* Routing decisions per wall second of ``hermes/Routing-v0`` in-process and against a
  real ``hermes serve`` (over the session stream), against a baseline measured in the
  same run: the same decisions answered by a bare engine loop (Simulation.advance +
  decide, no Gymnasium, no observation), i.e. what the environment layer costs.
* Sweep throughput (simulations per minute) of ``hermes sweep`` on the local process pool
  with 1 worker (the baseline) and 2 workers, and on a local Ray instance (2 CPUs; Ray's
  start-up is timed apart, as a real cluster is already up).

    python benchmarks/research_platform.py            # ~2 minutes on 2 cores
    python benchmarks/research_platform.py --smoke    # seconds; no Ray
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import hermes_rl  # noqa: E402
from server.sweeps.plan import parse  # noqa: E402
from server.sweeps.runner import run_sweep  # noqa: E402
from sim_engine import Simulation, load_spec  # noqa: E402


def routing_spec(n: int) -> dict:
    spec = hermes_rl.routing.routing_spec()
    spec["workload"]["num_requests"] = n
    return spec


def bare_engine(n: int, seed: int) -> tuple[int, float]:
    """Baseline: the same episode answered round robin straight on the engine."""
    sim = Simulation(load_spec(routing_spec(n), {"seed": seed}), record_events=True)
    decisions, start = 0, time.perf_counter()
    while True:
        r = sim.advance()
        if r.reason.value != "decision_needed":
            break
        for d in sim.pending_decisions():
            sim.state()
            sim.decide(d.decision_id, "route", d.candidates[decisions % len(d.candidates)])
            decisions += 1
    return decisions, time.perf_counter() - start


def env_episode(n: int, seed: int, **kwargs) -> tuple[int, float]:
    env = gym.make("hermes/Routing-v0", spec=routing_spec(n), **kwargs)
    obs, info = env.reset(seed=seed)
    decisions, done, start = 0, False, time.perf_counter()
    while not done:
        mask = info["action_mask"]
        obs, _, term, trunc, info = env.step(int(np.flatnonzero(mask)[decisions % int(mask.sum())]))
        decisions += 1
        done = term or trunc
    wall = time.perf_counter() - start
    env.close()
    return decisions + 1, wall  # the first decision is served by reset (not timed)


def rate(fn, repeats: int, *args, **kwargs) -> float:
    best = 0.0
    for i in range(repeats):
        n, wall = fn(*args, seed=i, **kwargs)
        best = max(best, n / wall)
    return best


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("hermes serve did not start")


def sweep_doc(n_runs: int, requests: int) -> dict:
    return {"base": str(ROOT / "examples" / "specs" / "llama3-8b-h100.yaml"),
            "set": {"workload.num_requests": requests},
            "grid": {"workload.arrival.rate": [2.0 + i for i in range(n_runs)]}}


def sims_per_minute(backend: str, workers: int, n_runs: int, requests: int) -> float:
    plan = parse(sweep_doc(n_runs, requests))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(plan, out, backend, workers, progress=False)
        wall = time.perf_counter() - start
    assert result.ran == n_runs and not result.errors, result.errors
    return n_runs / wall * 60


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no Ray (a few seconds)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = p.parse_args()
    n, repeats = (40, 1) if args.smoke else (300, 3)
    base = local = 0.0
    for _ in range(repeats):  # interleaved, so both see the same machine load; best of each
        base = max(base, rate(bare_engine, 1, n))
        local = max(local, rate(env_episode, 1, n))
    print(f"bare engine loop (baseline)      decisions_per_s={base:9.0f}")
    print(f"Routing-v0 in-process            decisions_per_s={local:9.0f} ratio_vs_baseline={local / base:.3f}")
    proc, address = start_server()
    try:
        remote = rate(env_episode, repeats, n, backend="remote", target=address)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"Routing-v0 remote (stream)       decisions_per_s={remote:9.0f} ratio_vs_baseline={remote / base:.3f}")

    runs, requests = (4, 50) if args.smoke else (12, 2000)  # ~1 s runs: pool start-up is amortised
    one = sims_per_minute("local", 1, runs, requests)
    two = sims_per_minute("local", 2, runs, requests)
    print(f"sweep, process pool, 1 worker    sims_per_min={one:8.1f} (baseline; {runs} runs x {requests} requests)")
    print(f"sweep, process pool, 2 workers   sims_per_min={two:8.1f} ratio_vs_1_worker={two / one:.2f}")
    if not args.smoke and not args.no_ray and importlib.util.find_spec("ray"):
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        init_s = time.perf_counter() - start
        try:
            on_ray = sims_per_minute("ray", 2, runs, requests)
        finally:
            ray.shutdown()
        print(f"sweep, local Ray, 2 CPUs         sims_per_min={on_ray:8.1f} ratio_vs_1_worker={on_ray / one:.2f} "
              f"(ray.init {init_s:.1f} s not counted)")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(parallel ratios need idle cores)")
    print(f"research_platform env_decisions_per_s={local:.0f} sweep_2_workers_ratio={two / one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
