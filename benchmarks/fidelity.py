"""Serving-level fidelity: published serving-engine results vs HERMES configured as a user would.

    PYTHONPATH=. python benchmarks/fidelity.py              # every usable row, table, headline last
    PYTHONPATH=. python benchmarks/fidelity.py --smoke      # a small subset (CI)
    PYTHONPATH=. python benchmarks/fidelity.py --rows       # also print every row

Data: ``benchmarks/data/calibration/serving_engines.csv`` (the LLM-serving rows of
``../shared/calibration/serving_engines.csv``; ``--data`` to read another copy). Each usable row
becomes one simulation: the engine profile named after the row's engine (``trtllm-py`` for NeMo,
whose TensorRT-LLM export runs the Python session runtime, ``trtllm`` for MLPerf, ``sglang``,
``vllm-v0`` for vLLM 0.5-0.6, ``vllm`` for 0.10, ``legacy-2023`` for the 2023 vLLM), the hardware and model presets, the row's precision (``dtype``), tensor parallelism and
replicas, and its workload: a static batch (NeMo), an offline max-throughput run (all requests at
t=0), a Poisson request rate, or one request at a time. Nothing is tuned per row. MLPerf runs last
>= 40 minutes (NVIDIA v4.1 configs: min_duration 2400 s), so they are reported in their steady state:
offline throughput between the 10th and 90th percentile of completions, the server scenario as
600 simulated seconds whose latencies leave out the first quarter of arrivals. The vLLM v0.6 blog's
13 ms/token is the pre-0.6 engine it profiled: ``vllm-v0`` with serial host time (cpu_overlap 0).

Assumed lengths (the rows do not give them): ShareGPT = lognormal prompt mean 220 and output mean
200 tokens (sigma 1, clipped to 4..1024: the bench_serving filter), consistent with the rows'
output/request throughput ratio (~194) and vLLM issue 12315 (213 in / 218 out). MLPerf OpenOrca
(Llama-2-70B) = lognormal prompt mean 295, output mean 290 (samples/s vs tokens/s of the rows),
sigma 0.7, max 1024; MLPerf Mixtral = prompt mean 450, output mean 146, TP1 x 8, FP8.

vLLM rows run with the ``--num-scheduler-steps`` they name (``num_scheduler_steps``: multi-step
scheduling, whose tokens stream in bursts: their ITL is the gap between bursts).

Not usable (left out, reason printed with --rows): multi-turn conversation rows with a
prefix cache (the conversation structure is not in the row), LMCache store/load rows, CPU-time
shares, a latency row with no configuration. The GPU prefix cache is on where the engine has it on
by default (``vllm`` 0.10 rows); the SGLang README rows ran with the radix cache disabled.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_engine import Simulation, load_spec  # noqa: E402
from sim_engine.engines import PROFILES  # noqa: E402
from sim_engine.hardware import get_hardware  # noqa: E402
from sim_engine.latency import request_latencies  # noqa: E402
from sim_engine.models import get_model  # noqa: E402
from sim_engine.request import RequestInput  # noqa: E402
from sim_engine.summary import request_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "benchmarks" / "data" / "calibration"
NS = 1_000_000_000

SHAREGPT = {"in": (220.0, 1.0, 4, 1024), "out": (200.0, 1.0, 4, 1024)}
OPENORCA = {"in": (295.0, 0.7, 4, 1024), "out": (290.0, 0.7, 4, 1024)}
MIXTRAL = {"in": (450.0, 0.8, 4, 2048), "out": (146.0, 0.8, 4, 1024)}
MLPERF_SERVER_S = 600  # simulated seconds of an MLPerf server run (the real one lasts >= 2400 s)


@dataclass
class Case:
    """One simulation; several rows (metrics) may share it."""

    key: tuple
    source: str
    engine: str
    hardware: str
    model: str
    tp: int
    replicas: int
    dtype: str | None
    kind: str  # static | offline | rate | serial
    n: int
    lengths: dict | tuple  # assumed distribution, or fixed (prompt, output)
    rate: float = 0.0
    batch: int = 0  # static batch size / engine max batch
    scheduler: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)  # (row index, metric, measured, unit)
    engine_fields: dict = field(default_factory=dict)  # profile fields the row's engine version changes
    long_run: bool = False  # the measured run lasted far longer (MLPerf: 40 min): report its steady state


def _scheduler_steps(engine: str) -> dict:
    """The row's ``--num-scheduler-steps`` (vLLM 0.6 multi-step scheduling), as an engine field."""
    m = re.search(r"num-scheduler-steps (\d+)", engine)
    return {"num_scheduler_steps": int(m.group(1))} if m else {}


def _lengths(rng: np.random.Generator, n: int, spec: dict | tuple) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(spec, tuple):
        return np.full(n, spec[0]), np.full(n, spec[1])
    out = []
    for key in ("in", "out"):
        mean, sigma, lo, hi = spec[key]
        x = rng.lognormal(np.log(mean) - sigma ** 2 / 2, sigma, n)
        out.append(np.clip(np.rint(x), lo, hi).astype(int))
    return out[0], out[1]


def simulate(case: Case, engine_overrides: dict | None = None) -> dict[str, float]:
    """Run one case; returns every metric the rows of its kind can ask for."""
    fields = {**case.engine_fields, **(engine_overrides or {})}
    engine: dict | str = {"preset": case.engine, **fields} if fields else case.engine
    client = {"hardware": case.hardware, "model": case.model, "tp": case.tp, "replicas": case.replicas,
              "engine": engine}
    if case.dtype:
        client["dtype"] = case.dtype
    if case.scheduler:
        client["scheduler"] = dict(case.scheduler)
    doc = {"name": "fidelity", "seed": 1, "clients": [client], "router": "jsq",
           "workload": {"arrival": {"process": "none"}}}
    sim = Simulation(load_spec(doc))
    rng = np.random.default_rng(7)
    prompts, outputs = _lengths(rng, case.n, case.lengths)
    if case.kind == "rate":
        arrivals = np.cumsum(rng.exponential(1.0 / case.rate, case.n))
    else:
        arrivals = np.zeros(case.n)
    if case.kind == "serial":  # one request at a time: the next arrives after the previous finished
        t = 0
        for p, o in zip(prompts, outputs, strict=True):
            sim.inject([RequestInput(int(t), int(p), int(o))])
            sim.run()
            t = sim.now_ns + 1
    else:
        sim.inject([RequestInput(int(a * NS), int(p), int(o)) for a, p, o in zip(arrivals, prompts, outputs,
                                                                                    strict=True)])
        sim.run()
    m = request_metrics(sim)
    r = sim.request_records()
    done = m["e2e"].size
    if done < case.n:
        raise RuntimeError(f"{case.key}: {case.n - done} of {case.n} requests not completed")
    if case.long_run and case.kind == "rate":  # a 40-minute run gives warm-up no weight: leave it out
        keep = np.asarray(r["arrival_ns"]) >= float(arrivals[-1]) * 0.25 * NS
        m = request_latencies({k: np.asarray(v)[keep] for k, v in r.items()})
    start = float(r["arrival_ns"].min()) / NS
    span = float(r["finish_ns"].max()) / NS - start
    out_tok = float(m["output_tokens"].sum())
    in_tok = float(m["prompt_tokens"].sum())
    inside = None
    ends = r["finish_ns"] / NS
    if case.kind == "rate":
        # steady state: completions from a quarter of the arrival period to the later of the last
        # arrival and the 90th-percentile finish (an overloaded run keeps serving its queue); a measured
        # run is long, a short simulated one would be dominated by warm-up and drain
        t1 = start + 0.25 * (float(r["arrival_ns"].max()) / NS - start)
        t2 = max(float(r["arrival_ns"].max()) / NS, float(np.percentile(ends, 90)))
        inside = (ends >= t1) & (ends <= t2) & (r["first_token_ns"] >= 0)
    elif case.long_run and case.kind == "offline":  # saturated steady state: no ramp-up or drain
        t1, t2 = np.percentile(ends, [10, 90])
        inside = (ends >= t1) & (ends <= t2)
    if inside is not None:  # throughput inside the window [t1, t2]
        span = float(t2 - t1)
        done = int(inside.sum())
        out_tok = float(r["output_tokens"][inside].sum())
        in_tok = float(r["prompt_tokens"][inside].sum())
    itl = sim.summary()["latency_s"]["itl"]
    tpot = m["tpot"][m["output_tokens"] > 1]
    if not tpot.size:
        tpot = np.zeros(1)
    return {
        "ttft_mean": float(m["ttft"].mean()), "ttft_median": float(np.median(m["ttft"])),
        "ttft_p99": float(np.percentile(m["ttft"], 99)),
        "tpot_mean": float(tpot.mean()), "tpot_median": float(np.median(tpot)),
        "tpot_p99": float(np.percentile(tpot, 99)),
        "itl_median": itl["p50"], "e2e_mean": float(m["e2e"].mean()), "e2e_median": float(np.median(m["e2e"])),
        "req_per_s": done / span, "out_tok_per_s": out_tok / span, "in_tok_per_s": in_tok / span,
        "total_tok_per_s": (in_tok + out_tok) / span,
    }


# metric name in the CSV -> (simulated metric, scale from seconds or per-second to the row's unit)
METRICS: dict[str, tuple[str, float]] = {
    "avg_request_latency": ("e2e_mean", 1e3), "avg_throughput": ("req_per_s", 1.0),
    "offline_tokens_per_second": ("out_tok_per_s", 1.0), "offline_samples_per_second": ("req_per_s", 1.0),
    "server_completed_tokens_per_second": ("out_tok_per_s", 1.0),
    "server_completed_samples_per_second": ("req_per_s", 1.0),
    "server_mean_TTFT": ("ttft_mean", 1e3), "server_p99_TTFT": ("ttft_p99", 1e3),
    "server_mean_TPOT": ("tpot_mean", 1e3), "server_p99_TPOT": ("tpot_p99", 1e3),
    "server_mean_e2e_latency": ("e2e_mean", 1e3),
    "median_E2E_latency": ("e2e_median", 1e3), "median_TTFT": ("ttft_median", 1e3),
    "median_TPOT": ("tpot_median", 1e3), "median_ITL": ("itl_median", 1e3),
    "request_throughput": ("req_per_s", 1.0), "output_throughput": ("out_tok_per_s", 1.0),
    "total_token_throughput": ("total_tok_per_s", 1.0), "input_throughput": ("in_tok_per_s", 1.0),
    "mean_TTFT": ("ttft_mean", 1e3), "mean_TPOT": ("tpot_mean", 1e3),
    "time_per_output_token": ("tpot_mean", 1e3), "TTFT_cache_miss": ("ttft_mean", 1.0),
}


def _int(text: str) -> int:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else 0


def _hardware(text: str) -> str:
    t = text.upper()
    for key, preset in (("H200", "H200"), ("H100", "H100-SXM"), ("A100", "A100-80GB"), ("4090", "RTX-4090")):
        if key in t:
            return preset
    raise KeyError(text)


def _short_source(src: str) -> str:
    for key, name in (("nemo-framework", "nemo-trtllm"), ("mlcommons", "mlperf-v4.1"),
                      ("sglang", "sglang-readme"), ("vllm-project/vllm/issues", "vllm-issues"),
                      ("vLLM v0.6.0", "vllm-blog-v0.6"), ("gpustack", "gpustack-4090")):
        if key in src:
            return name
    return src[:20]


def _bandwidth_floor_ms(hardware: str, model: str, tp: int, output_tokens: int) -> float:
    """No engine beats this: each decode step reads the weight shard at peak memory bandwidth."""
    dev, m = get_hardware(hardware), get_model(model)
    return output_tokens * m.weight_bytes() / tp / (dev.mem_bw_gbs * 1e9) * 1e3


def build_cases(data: Path) -> tuple[list[Case], list[tuple[int, str, str]]]:
    """Every usable row grouped into simulations; plus (row, metric, reason) for the rows left out."""
    with open(data / "serving_engines.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cases: dict[tuple, Case] = {}
    skipped: list[tuple[int, str, str]] = []

    def add(i: int, r: dict, case: Case) -> None:
        c = cases.setdefault(case.key, case)
        metric = r["metric"]
        unit_scale = 1.0
        c.rows.append((i, metric, float(r["value"]) * unit_scale, r["unit"]))

    for i, r in enumerate(rows):
        src, metric, eng = r["source"], r["metric"], r["engine"]
        short = _short_source(src)
        if metric not in METRICS:
            skipped.append((i, metric, "not a serving metric of a simulated run (CPU share, transfer, factor)"))
            continue
        if short == "nemo-trtllm":
            b, tp = _int(r["batch_or_concurrency"]), _int(r["tp"])
            key = (short, r["hardware"], r["model"], tp, b)
            floor = _bandwidth_floor_ms(_hardware(r["hardware"]), r["model"].split()[0], tp, int(r["output_len"]))
            latency = float(r["value"]) if metric == "avg_request_latency" else b / float(r["value"]) * 1e3
            if latency < floor:
                skipped.append((i, metric, f"{latency:.0f} ms is below the bandwidth floor {floor:.0f} ms (every "
                                           "output token streams the weight shard from HBM at datasheet rate)"))
                continue
            add(i, r, Case(key, short, "trtllm-py", _hardware(r["hardware"]), r["model"].split()[0], tp, 1, None,
                           "static", b, (int(r["input_len"]), int(r["output_len"])), batch=b,
                           scheduler={"batching": "static", "max_num_seqs": b}))
        elif short == "mlperf-v4.1":
            hw = _hardware(r["hardware"])
            mixtral = "Mixtral" in r["model"]
            tp = 1 if mixtral else _int(r["tp"])
            replicas = 8 // tp
            batch = _int(r["batch_or_concurrency"].replace("gpu_batch_size", "")) or 256
            offline = r["qps"].strip() == "offline"
            rate = 0.0 if offline else float(re.match(r"[\d.]+", r["qps"]).group(0))
            per_replica = batch if "per GPU" in r["batch_or_concurrency"] or "per TP" in r["batch_or_concurrency"] \
                else batch
            # both scenarios ran >= 40 minutes (NVIDIA configs: min_duration 2400000 ms); simulated:
            # offline the whole QSL, server 600 s, each reported in its steady state (long_run)
            n = (15000 if mixtral else 24576) if offline else int(rate * MLPERF_SERVER_S)
            key = (short, hw, r["model"], offline, rate)
            add(i, r, Case(key, short, "trtllm", hw, "Mixtral-8x7B" if mixtral else "Llama-2-70B", tp, replicas,
                           "fp8", "offline" if offline else "rate", n, MIXTRAL if mixtral else OPENORCA, rate,
                           per_replica, {"max_num_seqs": per_replica}, long_run=True))
        elif short == "sglang-readme":
            engine = "sglang" if eng.startswith("SGLang") else "vllm-v0"
            hw = _hardware(r["hardware"])
            model = "Llama-3.1-8B" if "8B" in r["model"] else "Llama-3.1-70B"
            tp = _int(r["tp"])
            offline = r["qps"].strip() == "inf"
            rate = 0.0 if offline else float(r["qps"])
            n = 5000 if offline else (1200 if rate <= 4 else 2400)
            sched = {"max_model_len": 4096} if engine == "vllm-v0" else {}
            key = (short, engine, hw, model, rate)
            # the README's runs: "radix cache disabled" (vllm-v0 has no prefix cache anyway)
            add(i, r, Case(key, short, engine, hw, model, tp, 1, None, "offline" if offline else "rate", n,
                           SHAREGPT, rate, scheduler=sched,
                           engine_fields={"prefix_caching": False, **_scheduler_steps(eng)}))
        elif short == "vllm-issues":
            if "Llama-3.3" in r["model"] and "benchmark_throughput" in eng:
                steps = _scheduler_steps(eng)
                key = (short, "3.3-70b", steps.get("num_scheduler_steps", 1))
                add(i, r, Case(key, short, "vllm-v0", "A100-80GB", "Llama-3.3-70B", 4, 1, None, "offline", 200,
                               SHAREGPT, engine_fields=steps))
            elif "Aug 2023" in eng:
                key = (short, "llama-7b-2023")
                if metric == "average_latency_per_output_token":
                    skipped.append((i, metric, "unit 's' per output token of a 200-s mean latency: ambiguous"))
                    continue
                add(i, r, Case(key, short, "legacy-2023", "A100-80GB", "Llama-2-7B", 1, 1, None, "rate", 2000,
                               SHAREGPT, 200.0))
            else:
                skipped.append((i, metric, "benchmark_latency configuration not given"))
        elif short == "vllm-blog-v0.6":
            key = (short, "light-load")
            # the blog's pre-0.6 engine (0.5.x): host work serial with the GPU (0.6 added the
            # overlapped output processing that the vllm-v0 profile's cpu_overlap stands for)
            add(i, r, Case(key, short, "vllm-v0", "H100-SXM", "Llama-3.1-8B", 1, 1, None, "serial", 20,
                           SHAREGPT, engine_fields={"cpu_overlap": 0.0}))
        elif short == "gpustack-4090":
            if "multi-turn" in r["notes"] and not r["input_len"].strip().isdigit() and metric != "TTFT_cache_miss":
                skipped.append((i, metric, "multi-turn conversations with a prefix cache: structure not given"))
                continue
            if "with LMCache" in eng and metric != "TTFT_cache_miss":
                skipped.append((i, metric, "LMCache offload (store/load) time: not modelled"))
                continue
            if metric == "TTFT_cache_miss":
                skipped.append((i, metric, "0.74 s for a 20K-token prefill needs ~450 dense TFLOPS; the same "
                                           "source's 20K random-prompt rows show ~3.7K prefill tokens/s"))
                continue
            p = int(r["input_len"])
            key = (short, p)
            add(i, r, Case(key, short, "vllm", "RTX-4090", "Qwen3-8B", 1, 1, None, "offline", 100,
                           (p, int(r["output_len"]))))
        else:
            skipped.append((i, metric, "source not modelled"))
    return list(cases.values()), skipped


@dataclass
class Result:
    source: str
    engine: str
    metric: str
    measured: float
    predicted: float
    label: str

    @property
    def err(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured


def evaluate(cases: Sequence[Case], overrides: Callable[[str], dict | None] = lambda e: None) -> list[Result]:
    out = []
    for c in cases:
        sim = simulate(c, overrides(c.engine))
        for _, metric, measured, _unit in c.rows:
            name, scale = METRICS[metric]
            out.append(Result(c.source, c.engine, metric, measured, sim[name] * scale,
                              f"{c.engine} {c.hardware} {c.model} tp{c.tp}x{c.replicas} {c.kind} "
                              f"n={c.n} {'rate=' + str(c.rate) if c.rate else ''}"))
    return out


def summary_line(name: str, errs: Sequence[float], width: int = 36) -> str:
    """One line of signed % errors: count, median and p90 of their absolute values, signed mean."""
    if not len(errs):
        return f"{name:{width}s} n=   0"
    a = np.abs(np.asarray(errs))
    return (f"{name:{width}s} n={len(a):4d} median |err|={np.median(a):6.1f}% p90={np.percentile(a, 90):6.1f}% "
            f"mean signed={np.mean(errs):+6.1f}%")


def report(results: Sequence[Result], show_rows: bool) -> float:
    if show_rows:
        for r in results:
            print(f"{r.source:14s} {r.metric:36s} measured={r.measured:12.3f} predicted={r.predicted:12.3f} "
                  f"{r.err:+7.1f}%  {r.label}")
    by_source: dict[str, list[float]] = defaultdict(list)
    by_metric: dict[str, list[float]] = defaultdict(list)
    by_engine: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_source[r.source].append(r.err)
        by_metric[f"{r.source}:{r.metric}"].append(r.err)
        by_engine[r.engine].append(r.err)
    print("\n# by source")
    for k, v in sorted(by_source.items()):
        print(summary_line(k, v))
    print("\n# by engine profile")
    for k, v in sorted(by_engine.items()):
        print(summary_line(k, v))
    print("\n# by source and metric")
    for k, v in sorted(by_metric.items()):
        print(summary_line(k, v))
    errs = [r.err for r in results]
    print()
    print(summary_line("all usable rows", errs))
    return float(statistics.median(abs(e) for e in errs))


SMOKE_SOURCES = ("nemo-trtllm", "sglang-readme")
FIT_FIELDS = ("step_cpu_us", "cpu_overlap", "frontend_us")


def fit(cases: Sequence[Case], engine: str, iters: int, fields: Sequence[str] = FIT_FIELDS,
        train_hw: str | None = None, source: str | None = None) -> dict[str, float]:
    """Host-time ``fields`` of one engine profile minimising the mean |log error| over all its usable rows.

    ``source``: only that source's rows. ``train_hw``: fit on the rows on that hardware only, and
    report the loss on the held-out rows of the same sources on other hardware, before and after.
    """
    import math

    from calibration import nelder_mead  # the same optimiser as the step calibration

    mine = [c for c in cases if c.engine == engine and source in (None, c.source)]
    held: list[Case] = []
    if train_hw:
        train = [c for c in mine if c.hardware == train_hw]
        sources = {c.source for c in train}
        held = [c for c in mine if c.hardware != train_hw and c.source in sources]
        mine = train
    base = PROFILES[engine]

    def unpack(x: np.ndarray) -> dict[str, float]:
        return {k: (1 / (1 + math.exp(-v)) if k == "cpu_overlap" else math.exp(v))
                for k, v in zip(fields, x, strict=True)}

    def loss(x: np.ndarray) -> float:
        res = evaluate(mine, lambda e: unpack(x))
        return float(np.mean([abs(math.log(r.predicted / r.measured)) for r in res]))

    def start(k: str) -> float:
        v = getattr(base, k)
        if k == "cpu_overlap":
            v = min(max(v, 0.02), 0.98)
            return math.log(v / (1 - v))
        return math.log(max(v, 10.0))

    x0 = [start(k) for k in fields]
    x = nelder_mead(loss, x0, step=0.5, iters=iters, tol=1e-4)
    out = unpack(x)
    print(f"{engine}: rows={sum(len(c.rows) for c in mine)} loss={loss(x):.4f} (start {loss(np.array(x0)):.4f}) "
          + ", ".join(f"{k}={v:.4g}" for k, v in out.items()))
    if held:
        def held_loss(o: dict[str, float] | None) -> float:
            return float(np.mean([abs(math.log(r.predicted / r.measured)) for r in evaluate(held, lambda e: o)]))
        print(f"held out ({', '.join(sorted({c.hardware for c in held}))}): rows={sum(len(c.rows) for c in held)} "
              f"loss={held_loss(out):.4f} (profile {held_loss(None):.4f})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding serving_engines.csv")
    ap.add_argument("--rows", action="store_true", help="print every row")
    ap.add_argument("--smoke", action="store_true", help="a small subset: NeMo batch<=4 and SGLang rate rows")
    ap.add_argument("--fit", metavar="ENGINE", help="fit that profile's host time (step, overlap, front-end)")
    ap.add_argument("--iters", type=int, default=40, help="optimiser iterations for --fit")
    ap.add_argument("--fields", default=",".join(FIT_FIELDS), help="comma-separated profile fields to fit")
    ap.add_argument("--train-hw", help="with --fit: fit on this hardware's rows, validate on the others")
    ap.add_argument("--fit-source", help="with --fit: only this source's rows (e.g. nemo-trtllm)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cases, skipped = build_cases(args.data)
    if args.fit:
        fit(cases, args.fit, args.iters, tuple(args.fields.split(",")), args.train_hw,
            args.fit_source)
        print(f"fit took {time.perf_counter() - t0:.1f} s")
        return 0
    if args.smoke:
        cases = [c for c in cases if c.source in SMOKE_SOURCES and c.kind in ("static", "rate")
                 and c.n <= 1200 and c.model != "Llama-3.1-70B"]
    if args.rows:
        for i, metric, why in skipped:
            print(f"skipped row {i} {metric}: {why}")
    results = evaluate(cases)
    median = report(results, args.rows)
    print(f"(rows used: {len(results)}, skipped: {len(skipped)}, simulations: {len(cases)}, "
          f"{time.perf_counter() - t0:.1f} s)")
    print(f"serving_median_abs_pct_error={median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
