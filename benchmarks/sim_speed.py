"""Simulation speed: simulated requests per wall-clock second.

Replays the whole Azure conversation trace 2023 on 4 H100 clients (Llama-3.1-8B,
chunked prefill), and runs the multi-stage scenario of examples/specs/multistage-hetero.yaml
(RAG with embedding, IVF-PQ search on a CPU and re-rank, model routing, disaggregated
prefill/decode, reasoning branches and a guard stage on GPUs of two kinds and a CPU). The baseline, measured in the same run on a slice of the
trace, is the same simulator with closed-form decode runs switched off (one
event per decode step, as step-by-step simulators do), so the printed ratio
says what the closed form buys on this machine today.

    python benchmarks/sim_speed.py            # full trace + baseline slice
    python benchmarks/sim_speed.py --smoke    # a few seconds, for CI (asserts nothing)
    python benchmarks/sim_speed.py --million  # also 1,000,000 requests: peak resident memory
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim_engine.llm_client as llm_client  # noqa: E402
from sim_engine import Simulation, load_spec  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
SPEC = SPECS / "azure-conv-4xh100.yaml"
MULTISTAGE = SPECS / "multistage-hetero.yaml"


def timed_run(overrides: dict, spec: Path = SPEC) -> tuple[float, Simulation]:
    sim = Simulation(load_spec(str(spec), overrides))
    gc.collect()
    start = time.perf_counter()
    sim.run()
    return time.perf_counter() - start, sim


def report(label: str, wall: float, sim: Simulation) -> float:
    rps = sim.injected / wall
    print(f"{label:<34} requests={sim.injected:>8} wall_s={wall:8.3f} events={sim.kernel.events_processed:>9} "
          f"events_per_s={sim.kernel.events_processed / wall:>10.0f} requests_per_wall_s={rps:>9.0f}")
    return rps


def million() -> None:
    doc_overrides = {
        "workload": {"arrival": {"process": "poisson", "rate": 60.0}, "num_requests": 1_000_000,
                     "prompt_tokens": {"dist": "lognormal", "mean": 1000, "sigma": 0.8, "max": 8000},
                     "output_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.8, "max": 2000}},
        "clients[0].replicas": 16,
    }
    wall, sim = timed_run(doc_overrides)
    report("1M requests, 16 x H100, Poisson 60/s", wall, sim)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_resident_mb={peak_mb:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI")
    ap.add_argument("--million", action="store_true", help="also run 1M requests and report peak memory")
    args = ap.parse_args()
    n_base = 300 if args.smoke else 3000
    full = {"workload.num_requests": 2000} if args.smoke else {}

    # baseline: one event per decode step (closed form off), on the first n_base requests
    saved = llm_client.MAX_RUN_STEPS
    llm_client.MAX_RUN_STEPS = 1
    wall_b, sim_b = timed_run({"workload.num_requests": n_base})
    llm_client.MAX_RUN_STEPS = saved
    base = report(f"baseline (step by step), {n_base} req", wall_b, sim_b)
    wall_c, sim_c = timed_run({"workload.num_requests": n_base})
    same = report(f"closed form, same {n_base} req", wall_c, sim_c)
    assert sim_b.summary()["latency_s"] == sim_c.summary()["latency_s"], "closed form changed results"

    wall, sim = timed_run(full)
    rps = report("closed form, whole trace" if not args.smoke else "closed form, 2000 req", wall, sim)
    s = sim.summary()
    print(f"sim_time_s={s['sim_time_s']:.1f} completed={s['requests']['completed']} "
          f"ttft_p50_ms={s['latency_s']['ttft']['p50'] * 1e3:.1f} tpot_p50_ms={s['latency_s']['tpot']['p50'] * 1e3:.2f}")
    print(f"closed_form_speedup_vs_step_by_step={same / base:.2f}")
    n_multi = 300 if args.smoke else 3000
    wall_m, sim_m = timed_run({"workload.num_requests": n_multi}, MULTISTAGE)
    report(f"multi-stage (RAG+route+P/D+reasoning), {n_multi}", wall_m, sim_m)
    if args.million:
        million()
    print(f"simulated_requests_per_wall_second={rps:.0f}")


if __name__ == "__main__":
    main()
