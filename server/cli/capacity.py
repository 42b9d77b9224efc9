"""`hermes capacity SPEC --slo ttft_p90=0.5`: the highest arrival rate that meets the SLOs.

With `--sweep SWEEP.yaml`, the capacity of every configuration of the sweep (its
seeds are the seeds every rate is checked on), with devices and cost per hour (from
the sweep's `prices`), and with `--load RATE` the cheapest configuration that serves it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

from sim_engine import SpecError, load_spec

from .simulate import parse_overrides
from .sweep import add_backend_args


def _configs(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    """The plan (a sweep's, or one made of SPEC) and its configurations."""
    from ..sweeps.plan import SweepPlan, load

    if bool(args.spec) == bool(args.sweep):
        raise SpecError("spec", "give a SPEC or --sweep SWEEP.yaml (one of them)")
    fixed = parse_overrides(args.set or [])
    if args.sweep:
        plan = load(args.sweep)
        plan.fixed.update(fixed)
    else:
        base = load_spec(args.spec, fixed).document
        plan = SweepPlan(base, {}, [], [{}], [int(base.get("seed", 0))])
    if args.seeds:
        plan.seeds = list(range(args.seeds))
    return plan, plan.configs


def run(args: argparse.Namespace) -> int:
    from ..sweeps.backends import map_tasks
    from ..sweeps.capacity import capacity_task, check_rate_spec, devices_and_cost, parse_slos

    try:
        slos = parse_slos(args.slo or [])
        plan, configs = _configs(args)
        costs = [devices_and_cost(plan.base, plan.overrides(c), plan.prices) for c in configs]
        for c in configs:
            check_rate_spec(plan.base, plan.overrides(c))
    except SpecError as e:
        print(f"hermes capacity: {e}", file=sys.stderr)
        return 2
    tasks = [{"base": plan.base, "overrides": plan.overrides(c), "seeds": plan.seeds, "slos": slos,
              "tol": args.tol, "max_rate": args.max_rate, "start": args.start} for c in configs]
    results: list[dict[str, Any]] = [{}] * len(tasks)
    if len(tasks) == 1:
        results[0] = capacity_task(tasks[0])
    else:
        from tqdm import tqdm

        with tqdm(total=len(tasks), unit="config", desc="capacity", file=sys.stderr, disable=None) as bar:
            for i, r in map_tasks(capacity_task, tasks, args.backend, args.workers, args.address):
                results[i] = r
                bar.update()
    rows = []
    for config, (devices, cost), r in zip(configs, costs, results, strict=True):
        row: dict[str, Any] = {**config, "max_rate": r.get("max_rate"), "devices": devices,
                               "cost_per_hour": cost, "error": r.get("error", "")}
        rate = r.get("max_rate") or 0.0
        row["cost_per_rps"] = cost / rate if cost is not None and rate > 0 else None
        if args.load is not None and rate > 0:
            row["copies_for_load"] = math.ceil(args.load / rate)
            row["cost_for_load"] = row["copies_for_load"] * cost if cost is not None else None
        rows.append(row)
    key = "cost_for_load" if args.load is not None and plan.prices else "cost_per_rps" if plan.prices else None
    ranked = sorted(rows, key=lambda r: (r[key] is None, r[key] or 0.0) if key else (-(r["max_rate"] or 0.0),))
    slo_text = ", ".join(f"{k} <= {v:g} s" for k, v in slos.items())
    print(f"capacity under {slo_text} ({len(plan.seeds)} seed(s) per rate):")
    for r in ranked:
        what = ", ".join(f"{k}={r[k]}" for k in plan.fields) or "spec"
        if r["error"]:
            print(f"  {what}: error: {r['error']}")
            continue
        line = f"  {what}: {r['max_rate']:.3f} req/s on {r['devices']} device(s)"
        if r["cost_per_hour"] is not None:
            line += f", ${r['cost_per_hour']:.2f}/h, ${r['cost_per_rps']:.2f}/h per req/s" \
                if r["cost_per_rps"] is not None else f", ${r['cost_per_hour']:.2f}/h"
        if args.load is not None and "copies_for_load" in r:
            line += f"; {r['copies_for_load']} cop{'y' if r['copies_for_load'] == 1 else 'ies'} for {args.load:g} req/s"
            if r.get("cost_for_load") is not None:
                line += f" = ${r['cost_for_load']:.2f}/h"
        print(line)
    if key and ranked and ranked[0][key] is not None:
        best = ranked[0]
        what = ", ".join(f"{k}={best[k]}" for k in plan.fields) or "spec"
        print(f"cheapest{' for the load' if args.load is not None else ' per req/s'}: {what}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"slos": slos, "seeds": plan.seeds, "results": rows}, f, indent=2)
    if args.csv:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(rows)
    return 1 if any(r["error"] for r in rows) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capacity", help="highest arrival rate meeting SLOs (per configuration of a sweep)",
                       description="Bisection over workload.arrival.rate for the highest rate at which every "
                       "seed completes all requests within the SLOs. Exit code 2 on invalid input.")
    p.add_argument("spec", nargs="?", help="spec file (YAML/JSON) or preset name")
    p.add_argument("--sweep", help="a sweep file: the capacity of each of its configurations")
    p.add_argument("--slo", action="append", metavar="METRIC_STAT=SECONDS",
                   help="an SLO, e.g. ttft_p90=0.5 or tpot_p99=0.05 (repeatable; all must hold)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec field (repeatable)")
    p.add_argument("--seeds", type=int, default=None, help="check every rate on seeds 0..N-1")
    p.add_argument("--start", type=float, default=None, help="first rate probed (default: the spec's rate)")
    p.add_argument("--max-rate", type=float, default=1e4, help="stop doubling here (req/s)")
    p.add_argument("--tol", type=float, default=0.05, help="relative width of the final bracket")
    p.add_argument("--load", type=float, default=None, help="rank configurations by the cost of serving this rate")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--csv", metavar="OUT", help="write the results as CSV")
    add_backend_args(p)
    p.set_defaults(func=run)
