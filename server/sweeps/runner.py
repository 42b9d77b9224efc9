"""Run a sweep plan: one simulation per run, one row per run, resumable.

Rows go to ``OUT/runs.csv`` as runs finish (so an interrupted sweep keeps its work);
a second invocation skips the runs whose rows are there. At the end the CSV is
rewritten in plan order (so the file does not depend on which worker finished
first), and ``runs.parquet`` is written too when pyarrow is installed.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import map_tasks
from .plan import Run, SweepPlan

# column -> path in the summary (sim_engine.summary.summarize)
FIGURES: dict[str, tuple[str, ...]] = {
    "completed": ("requests", "completed"),
    "dropped": ("requests", "dropped"),
    "preemptions": ("requests", "preemptions"),
    "sim_time_s": ("sim_time_s",),
    "ttft_mean": ("latency_s", "ttft", "mean"),
    "ttft_p50": ("latency_s", "ttft", "p50"),
    "ttft_p90": ("latency_s", "ttft", "p90"),
    "ttft_p99": ("latency_s", "ttft", "p99"),
    "tpot_mean": ("latency_s", "tpot", "mean"),
    "tpot_p50": ("latency_s", "tpot", "p50"),
    "tpot_p90": ("latency_s", "tpot", "p90"),
    "tpot_p99": ("latency_s", "tpot", "p99"),
    "e2e_mean": ("latency_s", "e2e", "mean"),
    "e2e_p50": ("latency_s", "e2e", "p50"),
    "e2e_p90": ("latency_s", "e2e", "p90"),
    "e2e_p99": ("latency_s", "e2e", "p99"),
    "queue_p90": ("latency_s", "queue", "p90"),
    "requests_per_s": ("throughput", "requests_per_s"),
    "output_tokens_per_s": ("throughput", "output_tokens_per_s"),
    "energy_j": ("energy_j",),
}
CSV_NAME, PARQUET_NAME = "runs.csv", "runs.parquet"


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column, path in FIGURES.items():
        value: Any = summary
        for key in path:
            value = value[key]
        out[column] = value
    return out


def simulate(task: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Worker: run one spec (base document + overrides) to the end; its figures, or its error."""
    from sim_engine import Simulation, SpecError, load_spec

    base, overrides = task
    try:
        sim = Simulation(load_spec(base, overrides))
        sim.run()
    except (SpecError, ValueError) as e:
        return {"error": str(e)}
    return figures(sim.summary())


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class SweepResult:
    rows: list[dict[str, str]]  # plan order, every finished run
    ran: int
    skipped: int
    errors: dict[str, str] = field(default_factory=dict)  # run_id -> message
    csv_path: Path | None = None
    parquet_path: Path | None = None


def columns(plan: SweepPlan) -> list[str]:
    return ["run_id", "run", "seed", *plan.fields, *FIGURES]


def read_rows(path: Path, expected: list[str]) -> dict[str, dict[str, str]]:
    """Rows of an earlier (possibly interrupted) run of the same sweep, by run id."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != expected:
            raise ValueError(f"{path}: written by a different sweep (columns {reader.fieldnames}); "
                             "use another --out directory")
        return {r["run_id"]: r for r in reader if r.get(expected[-1]) not in (None, "")}


def row_of(plan: SweepPlan, run: Run, result: dict[str, Any]) -> dict[str, str]:
    row = {"run_id": run.run_id, "run": str(run.index), "seed": str(run.seed)}
    row.update({k: _cell(run.config[k]) for k in plan.fields})
    row.update({k: _cell(result[k]) for k in FIGURES})
    return row


def run_sweep(plan: SweepPlan, out_dir: str | Path, backend: str = "local", workers: int = 1,
              address: str | None = None, progress: bool = True,
              on_row: Callable[[dict[str, str]], None] | None = None) -> SweepResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = columns(plan)
    csv_path = out / CSV_NAME
    done = read_rows(csv_path, cols)
    runs = plan.runs
    todo = [r for r in runs if r.run_id not in done]
    if not csv_path.is_file() or not done:
        with csv_path.open("w", newline="") as f:
            csv.DictWriter(f, cols).writeheader()
    errors: dict[str, str] = {}
    if todo:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="run", desc=f"sweep ({backend})", file=sys.stderr, disable=None)
        tasks = [(plan.base, plan.overrides(r.config, r.seed)) for r in todo]
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, cols)
            try:
                for i, result in map_tasks(simulate, tasks, backend, workers, address):
                    run = todo[i]
                    if "error" in result:
                        errors[run.run_id] = result["error"]
                    else:
                        row = row_of(plan, run, result)
                        writer.writerow(row)
                        f.flush()
                        done[run.run_id] = row
                        if on_row is not None:
                            on_row(row)
                    if bar is not None:
                        bar.update()
            finally:
                if bar is not None:
                    bar.close()
    rows = [done[r.run_id] for r in runs if r.run_id in done]
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)
    parquet = write_parquet(csv_path, out / PARQUET_NAME)
    return SweepResult(rows, len(todo) - len(errors), len(runs) - len(todo), errors, csv_path, parquet)


def write_parquet(csv_path: Path, path: Path) -> Path | None:
    """The CSV as Parquet (None when pyarrow is not installed)."""
    try:
        from pyarrow import csv as pa_csv
        from pyarrow import parquet as pq
    except ImportError:
        return None
    pq.write_table(pa_csv.read_csv(csv_path), path)
    return path
