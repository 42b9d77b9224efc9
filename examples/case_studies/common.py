"""Helpers shared by the case-study scripts: arguments, parallel sweeps, metrics, CSV and plots.

Every sweep point is an independent ``Simulation`` built from a plain spec dict, so points
run in a process pool (``--procs``, default 2). Latency metrics are computed from the
per-request records, over the requests that arrived after a warm-up share of the run.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as `python examples/case_studies/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

from sim_engine import Simulation, load_spec  # noqa: E402
from sim_engine.spec import BUNDLED_TRACES, DATA_DIR  # noqa: E402

NS = 1e9
H100 = "H100-SXM"
# Llama-3.1-70B in bf16 needs 70.6 GB per device on 2 x H100, which leaves the vllm profile only
# ~29K KV tokens per client; on TP2 clients the case studies use FP8 weights, as MIST did (KV stays bf16).
LLAMA70B_FP8 = {"preset": "Llama-3.1-70B", "weight_bytes_per_param": 1}
PAPER_CHUNK = 512  # HERMES/MIST's default chunk size for chunked batching
# the node NIC and rack uplink at line rate, as the paper's setup has them (400 Gb/s per 8-GPU node);
# the simulator's defaults are now what such links achieve, 0.86 x these (docs/FIDELITY.md, KV transfers)
PAPER_LINKS = {"node_link": {"bandwidth_gbs": 50.0, "latency_us": 5.0},
               "rack_link": {"bandwidth_gbs": 200.0, "latency_us": 10.0}}


def parse_args(name: str, doc: str, add: Callable[[argparse.ArgumentParser], None] | None = None):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / name),
                   help="output directory for the CSV and PNG files (default: %(default)s)")
    p.add_argument("--smoke", action="store_true", help="a tiny sweep that runs in seconds (for tests)")
    p.add_argument("--procs", type=int, default=2, help="worker processes (default: %(default)s)")
    if add is not None:
        add(p)
    args = p.parse_args()
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def sweep(fn: Callable, points: list, procs: int) -> list:
    """``[fn(p) for p in points]``, in a pool of ``procs`` processes when that helps."""
    if procs <= 1 or len(points) <= 1:
        return [fn(p) for p in points]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        return pool.map(fn, points, chunksize=1)


def run(doc: dict) -> Simulation:
    """Build a simulation from a spec dict and run it to the end."""
    sim = Simulation(load_spec(doc))
    sim.run()
    return sim


def run_windowed(doc: dict, t0_s: float, t1_s: float) -> tuple[Simulation, dict]:
    """Run to the end, reading the clients' token counters at t0 and t1 (simulated seconds).

    Returns the simulation and the rates inside [t0, t1]: generated tokens/s (every branch of
    every request) and prompt tokens/s -- the steady-state throughput, free of the ramp-up
    and of the drain after the last arrival.
    """
    sim = Simulation(load_spec(doc))
    counts = []
    for t in (t0_s, t1_s):
        sim.advance(until_ns=int(t * NS))
        st = sim.state().clients
        counts.append((sum(c.generation_tokens_total for c in st), sum(c.prompt_tokens_total for c in st)))
    sim.run()
    span = t1_s - t0_s
    return sim, {"gen_tok_s": (counts[1][0] - counts[0][0]) / span,
                 "prompt_tok_s": (counts[1][1] - counts[0][1]) / span}


def trace_lengths(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt tokens, output tokens) of a bundled trace (azure_conv, azure_code, ...)."""
    data = np.loadtxt(DATA_DIR / "traces" / BUNDLED_TRACES[name], delimiter=",", skiprows=1, ndmin=2)
    return data[:, -2].astype(np.int64), data[:, -1].astype(np.int64)


def trace_prompts(name: str) -> dict:
    """A prompt-length spec drawing from a bundled trace's prompt column."""
    return {"dist": "empirical", "trace": name, "column": "num_prefill_tokens"}


def completed(sim: Simulation, warmup: float = 0.1) -> dict[str, np.ndarray]:
    """Per-request arrays (seconds) of completed requests that arrived after the first ``warmup``
    share of the arrival span."""
    r = sim.request_records()
    arr = r["arrival_ns"]
    t0 = arr.min() + warmup * (arr.max() - arr.min()) if arr.size else 0
    sel = (r["status"] == 1) & (arr >= t0)
    out_tok = r["output_tokens"][sel]
    first, fin, a = r["first_token_ns"][sel], r["finish_ns"][sel], arr[sel]
    return {
        "idx": r["idx"][sel],
        "arrival": a / NS,
        "ttft": (first - a) / NS,
        "tpot": np.where(out_tok > 1, (fin - first) / NS / np.maximum(out_tok - 1, 1), np.nan),
        "e2e": (fin - a) / NS,
        "first": first / NS,
        "finish": fin / NS,
        "output_tokens": out_tok,
        "prompt_tokens": r["prompt_tokens"][sel],
    }


def pct(x: np.ndarray, p: float) -> float:
    x = x[~np.isnan(x)] if x.dtype.kind == "f" else x
    return float(np.percentile(x, p)) if x.size else math.nan


def window_throughput(sim: Simulation, warmup: float = 0.1) -> tuple[float, float]:
    """(requests/s, output tokens/s) completed between the warm-up point and the last arrival.

    In steady state this equals the offered load; when the cluster cannot keep up it is the
    rate the cluster really serves (the drain after the last arrival is left out).
    """
    r = sim.request_records()
    arr = r["arrival_ns"]
    if arr.size == 0:
        return 0.0, 0.0
    t0, t1 = arr.min() + warmup * (arr.max() - arr.min()), arr.max()
    if t1 <= t0:
        return 0.0, 0.0
    fin = r["finish_ns"]
    sel = (r["status"] == 1) & (fin >= t0) & (fin <= t1)
    span = (t1 - t0) / NS
    return float(sel.sum() / span), float(r["output_tokens"][sel].sum() / span)


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def line_panel(ax, rows: list[dict], x: str, y: str, series: str, order: Iterable[str], title: str,
               ylabel: str, logy: bool = False, hline: float | None = None) -> None:
    """One subplot: ``y`` against ``x``, one line per value of ``series``."""
    for name in order:
        pts = sorted((r[x], r[y]) for r in rows if r[series] == name and r[y] == r[y])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="grey", ls="--", lw=1)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(x.replace("_", " "), fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def say(lines: list[str], out: Path) -> None:
    """Print the findings and keep a copy next to the CSV."""
    text = "\n".join(lines)
    print(text)
    (out / "findings.txt").write_text(text + "\n")
