"""`hermes sweep SWEEP.yaml`: many simulations over spec fields and seeds, one row per run.

Runs on a local process pool (default) or Ray (`--backend ray [--address ...]`); rows go
to OUT/runs.csv (and runs.parquet with pyarrow); a rerun skips the runs already done.
"""

from __future__ import annotations

import argparse
import os
import sys

from sim_engine import SpecError


def run(args: argparse.Namespace) -> int:
    from ..sweeps.plan import load
    from ..sweeps.runner import run_sweep

    try:
        plan = load(args.sweep)
    except SpecError as e:
        print(f"hermes sweep: invalid sweep file: {e}", file=sys.stderr)
        return 2
    out = args.out or os.path.splitext(args.sweep)[0] + "-results"
    try:
        result = run_sweep(plan, out, args.backend, args.workers, args.address, progress=not args.quiet)
    except (RuntimeError, ValueError) as e:
        print(f"hermes sweep: {e}", file=sys.stderr)
        return 2
    print(f"{len(plan.runs)} runs ({result.ran} run now, {result.skipped} done before): {result.csv_path}"
          + (f", {result.parquet_path}" if result.parquet_path else ""), file=sys.stderr)
    for run_id, message in result.errors.items():
        print(f"hermes sweep: run {run_id} failed: {message}", file=sys.stderr)
    if args.plot and result.rows:
        try:
            from ..sweeps.plots import plot_sweep
        except ImportError:
            print("hermes sweep: --plot needs matplotlib", file=sys.stderr)
            return 1
        for path in plot_sweep(result.rows, plan.fields, os.path.join(out, "plots")):
            print(f"plot: {path}", file=sys.stderr)
    return 1 if result.errors else 0


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local process pool (default) or Ray tasks")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes of the local pool, or CPUs of a local Ray instance (default: all cores)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (auto, ray://HEAD:10001); default starts Ray on this machine")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep of simulations (grid or random over spec fields, seeds)",
                       description="Run every configuration x seed of a sweep file; one row per run in "
                       "OUT/runs.csv. Resumable: runs already in the CSV are skipped. Exit code 2 on an "
                       "invalid sweep file (the message names the field), 1 if a run failed.")
    p.add_argument("sweep", help="sweep file (YAML): base, grid or random, seeds, set")
    p.add_argument("--out", help="results directory (default: SWEEP-results beside the file)")
    add_backend_args(p)
    p.add_argument("--plot", action="store_true", help="plot the main figures against the swept fields")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
