"""Calibration of the analytical performance model against public A100/H100 measurements.

    PYTHONPATH=. python benchmarks/calibration.py            # compare, print tables, headline last
    PYTHONPATH=. python benchmarks/calibration.py --fit      # refit the constants in hardware.py

Data: ``../shared/calibration`` (``--data`` to change). Compared are

* every llama2-70b configuration of ``splitwise_perf_model.csv`` on a100-80gb and h100-80gb
  (TP 2/4/8): prefill (``prompt_time`` of the whole batch) and decode (``token_time``, the mean
  step while the context grows from the prompt to prompt + output), medians of the 5 repeats.
  Skipped: ``h100-80gb-pcap`` (derived: 1.3 x h100 prompt_time, not measured) and bloom-176b
  (a different model family, ALiBi attention, not in the catalogue);
* the GEMM operators (attn_pre_proj, attn_post_proj, mlp_up_proj, mlp_down_proj) of every
  Vidur ``mlp.csv`` profile for a100 and h100 (all models, TP 1-8, 1-4096+ tokens).

The fit (``--fit``) is three least-squares stages in log space, each over many rows:
GEMM constants on all Vidur GEMM rows, collective constants on all single-node Vidur
all-reduce rows, then attention efficiency and host overheads on all Splitwise step rows
(the two documented TP2 batch-64 prompt_time anomalies left out of the fit, kept in the report).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a clone

from sim_engine.engines import PROFILES, EngineProfile
from sim_engine.hardware import HARDWARE, Device
from sim_engine.models import get_model
from sim_engine.perf.analytical import AnalyticalPerfModel

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "calibration"
BUNDLED_DATA = ROOT / "benchmarks" / "data" / "calibration"  # the Splitwise llama2-70b rows only
DEFAULT_DATA = SHARED_DATA if SHARED_DATA.is_dir() else BUNDLED_DATA
LEGACY = PROFILES["legacy-2023"]
DEVICES = {"a100-80gb": "A100-80GB", "h100-80gb": "H100-SXM"}  # splitwise name -> preset
VIDUR_DEVICES = {"a100": "A100-80GB", "h100": "H100-SXM"}
NET_DEVICES = {"a100_dgx": "A100-80GB", "h100_dgx": "H100-SXM"}
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
# fixed, not fitted: the split between per-step and per-layer host time is not identifiable
# from one model (llama2-70b, 80 layers); a vLLM-v0-like scheduler + input preparation cost
STEP_OVERHEAD_US = 2000.0


# ---- data ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepRow:
    hardware: str  # preset name
    tp: int
    prompt: int
    batch: int
    output: int
    prompt_ms: float  # median of repeats
    token_ms: float

    @property
    def label(self) -> str:
        return f"{self.hardware} tp{self.tp} p{self.prompt} b{self.batch} o{self.output}"

    @property
    def anomalous_prefill(self) -> bool:
        """Splitwise TP2 batch 64: prompt_time below batch 32's (documented in the data README)."""
        return self.tp == 2 and self.batch == 64


def load_steps(data: Path) -> list[StepRow]:
    groups: dict[tuple[str, int, int, int, int], list[tuple[float, float]]] = defaultdict(list)
    with open(data / "splitwise_perf_model.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] != "llama2-70b" or r["hardware"] not in DEVICES:
                continue
            key = (DEVICES[r["hardware"]], int(r["tensor_parallel"]), int(r["prompt_size"]),
                   int(r["batch_size"]), int(r["token_size"]))
            groups[key].append((float(r["prompt_time"]), float(r["token_time"])))
    return [StepRow(*k, statistics.median(p for p, _ in v), statistics.median(t for _, t in v))
            for k, v in sorted(groups.items())]


@dataclasses.dataclass(frozen=True)
class GemmRows:
    """Vidur GEMM medians of one device, as flat arrays (one entry per op per row)."""

    device: str
    label: np.ndarray  # "model op"
    tp: np.ndarray
    tokens: np.ndarray
    params: np.ndarray  # weight elements of the shard
    in_w: np.ndarray
    out_w: np.ndarray
    ms: np.ndarray


def _gemm_shapes(r: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """(params, in width, out width) per GEMM op of one mlp.csv row's TP shard."""
    d, h, kv = int(r["n_embd"]), int(r["n_head"]), int(r["n_kv_head"])
    f, tp = int(r["n_expanded_embd"]), int(r["num_tensor_parallel_workers"])
    hd = d // h
    qkv = (h + 2 * kv) * hd / tp
    up = f / tp * (2 if r["use_gated_mlp"] == "True" else 1)
    return {
        "attn_pre_proj": (d * qkv, d, qkv),
        "attn_post_proj": (h * hd / tp * d, h * hd / tp, d),
        "mlp_up_proj": (d * up, d, up),
        "mlp_down_proj": (f / tp * d, f / tp, d),
    }


def load_gemms(data: Path) -> dict[str, GemmRows]:
    out: dict[str, GemmRows] = {}
    for vdev, preset in VIDUR_DEVICES.items():
        cols: dict[str, list] = defaultdict(list)
        for path in sorted((data / "vidur_profiling" / "compute" / vdev).glob("*/*/mlp.csv")):
            model = path.parent.name
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    shapes = _gemm_shapes(r)
                    for op in GEMM_OPS:
                        key = f"time_stats.{op}.median"
                        if not r.get(key):
                            continue
                        p, i, o = shapes[op]
                        cols["label"].append(f"{model} {op}")
                        cols["tp"].append(int(r["num_tensor_parallel_workers"]))
                        cols["tokens"].append(float(r["num_tokens"]))
                        cols["params"].append(p)
                        cols["in_w"].append(i)
                        cols["out_w"].append(o)
                        cols["ms"].append(float(r[key]))
        out[preset] = GemmRows(preset, *(np.array(cols[k]) for k in
                                         ("label", "tp", "tokens", "params", "in_w", "out_w", "ms")))
    return out


def load_allreduce(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(workers, bytes, ms) of single-node all-reduce medians per device."""
    out = {}
    for ndev, preset in NET_DEVICES.items():
        w, b, t = [], [], []
        with open(data / "vidur_profiling" / "network" / ndev / "all_reduce.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["num_workers"] != r["devices_per_node"]:
                    continue  # multi-node rows run over InfiniBand, not the scale-up link
                w.append(int(r["num_workers"]))
                b.append(float(r["size"]))
                t.append(float(r["time_stats.all_reduce.median"]))
        out[preset] = (np.array(w), np.array(b), np.array(t))
    return out


# ---- predictions -----------------------------------------------------------------------------
LLAMA2_70B = get_model("Llama-2-70B")


def perf_model(device: Device, tp: int, engine: EngineProfile = LEGACY) -> AnalyticalPerfModel:
    """The step model under the legacy-2023 engine (host time fitted on these very steps)."""
    return AnalyticalPerfModel(device, LLAMA2_70B, tp=tp, engine=engine)


def predict_step(pm: AnalyticalPerfModel, row: StepRow) -> tuple[float, float]:
    """(prefill ms of the whole batch, mean decode step ms over the measured output)."""
    prefill = pm.step([(0, row.prompt)] * row.batch, 0, 0).time_s
    ctx = row.batch * (row.prompt + np.arange(row.output - 1, dtype=np.int64))
    times, _ = pm.decode_steps(row.batch, ctx)
    return prefill * 1e3, float(times.mean()) * 1e3


def predict_gemms(device: Device, rows: GemmRows) -> np.ndarray:
    """Operator times (ms) from the model's own gemm() (the code under test, row by row)."""
    pm = AnalyticalPerfModel(device, get_model("Llama-2-7B"))
    return np.array([pm.gemm(t, p, i, o)[0] * 1e3 for t, p, i, o in
                     zip(rows.tokens, rows.params, rows.in_w, rows.out_w, strict=True)])


def predict_allreduce(device: Device, workers: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """NCCL kernel time: allreduce_time() without the host-side rank-skew term (not in Vidur's timer)."""
    kernel_only = dataclasses.replace(LEGACY, per_device_host=False, sync_us=0.0)
    out = np.empty(len(workers))
    for tp in np.unique(workers):
        pm = AnalyticalPerfModel(device, LLAMA2_70B, tp=int(tp), engine=kernel_only)
        sel = workers == tp
        out[sel] = [pm.allreduce_time(float(b)) * 1e3 for b in nbytes[sel]]
    return out


# ---- fitting ---------------------------------------------------------------------------------
def nelder_mead(f: Callable[[np.ndarray], float], x0: Sequence[float], step: float = 0.3,
                iters: int = 400, tol: float = 1e-10) -> np.ndarray:
    """Minimise f over R^n (no scipy dependency); parameters are pre-transformed to be unbounded."""
    n = len(x0)
    pts = [np.asarray(x0, float)] + [np.asarray(x0, float) + step * np.eye(n)[i] for i in range(n)]
    vals = [f(p) for p in pts]
    for _ in range(iters):
        order = np.argsort(vals)
        pts, vals = [pts[i] for i in order], [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) < tol:
            break
        centroid = np.mean(pts[:-1], axis=0)
        refl = centroid + (centroid - pts[-1])
        fr = f(refl)
        if fr < vals[0]:
            exp = centroid + 2 * (centroid - pts[-1])
            fe = f(exp)
            pts[-1], vals[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = refl, fr
        else:
            con = centroid + 0.5 * (pts[-1] - centroid)
            fc = f(con)
            if fc < vals[-1]:
                pts[-1], vals[-1] = con, fc
            else:
                pts = [pts[0] + 0.5 * (p - pts[0]) for p in pts]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    return pts[int(np.argmin(vals))]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def fit_gemm(device: Device, rows: GemmRows) -> dict[str, float]:
    """compute_eff, gemm_ramp_tokens, mem_eff, kernel_latency_us on every GEMM row of the device.

    The objective evaluates the same formula as AnalyticalPerfModel.gemm, vectorised.
    """
    peak, bw = device.peak_flops("bf16"), device.mem_bw_gbs * 1e9
    t, p, io = rows.tokens, rows.params, rows.in_w + rows.out_w
    log_meas = np.log(rows.ms * 1e-3)

    def unpack(x: np.ndarray) -> tuple[float, float, float, float]:
        return _sigmoid(x[0]), math.exp(x[1]), _sigmoid(x[2]), math.exp(x[3])

    def loss(x: np.ndarray) -> float:
        ce, ramp, me, lat = unpack(x)
        compute = 2.0 * p * (t + ramp) / (peak * ce)
        memory = (p * 2 + t * io * 2) / (bw * me)
        pred = np.maximum(compute, memory) + lat * 1e-6
        return float(np.mean((np.log(pred) - log_meas) ** 2))

    x = nelder_mead(loss, [_logit(0.7), math.log(50), _logit(0.8), math.log(5)])
    ce, ramp, me, lat = unpack(x)
    return {"compute_eff": ce, "gemm_ramp_tokens": ramp, "mem_eff": me, "kernel_latency_us": lat}


def fit_allreduce(device: Device, workers: np.ndarray, nbytes: np.ndarray, ms: np.ndarray) -> dict[str, float]:
    """comm_eff, comm_base_us, scaleup_latency_us on every single-node all-reduce row (kernel time)."""
    link = device.scaleup_bw_gbs * 1e9
    log_meas = np.log(ms * 1e-3)

    def unpack(x: np.ndarray) -> tuple[float, float, float]:
        return _sigmoid(x[0]), math.exp(x[1]), math.exp(x[2])

    def loss(x: np.ndarray) -> float:
        eff, base, lat = unpack(x)
        pred = (base + 2 * (workers - 1) * lat) * 1e-6 + 2 * (workers - 1) / workers * nbytes / (link * eff)
        return float(np.mean((np.log(pred) - log_meas) ** 2))

    x = nelder_mead(loss, [_logit(0.6), math.log(10), math.log(5)])
    eff, base, lat = unpack(x)
    return {"comm_eff": eff, "comm_base_us": base, "scaleup_latency_us": lat}


def attention_ceilings(data: Path) -> dict[str, float]:
    """FlashAttention-2 throughput / bf16 peak per device, from hardware_ceilings.csv."""
    out = {}
    with open(data / "hardware_ceilings.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["metric"] == "attention_throughput" and r["engine"] == "FlashAttention-2":
                name = "A100-80GB" if r["hardware"].startswith("A100") else "H100-SXM"
                out[name] = float(r["value"]) * 1e12 / HARDWARE[name].peak_flops("bf16")
    return out


def fit_steps(device: Device, rows: list[StepRow]) -> dict[str, float]:
    """The legacy-2023 engine's seq_cpu_us, sync_us, token_cpu_us on every Splitwise step row of the device.

    Mean absolute log error (robust to the stack's outliers); step_cpu_us is held at
    STEP_OVERHEAD_US and layer_cpu_us at 0 (a free per-layer term fitted to ~0 once the
    per-collective sync term was there; the per-step constant is not identifiable with sync).
    """
    rows = [r for r in rows if r.hardware == device.name]
    names = ("seq_cpu_us", "sync_us", "token_cpu_us")

    def unpack(x: np.ndarray) -> dict[str, float]:
        out = {k: math.exp(v) for k, v in zip(names, x, strict=True)}
        return out | {"step_cpu_us": STEP_OVERHEAD_US, "layer_cpu_us": 0.0}

    def loss(x: np.ndarray) -> float:
        eng = dataclasses.replace(LEGACY, per_device_host=False, **unpack(x))
        pms = {tp: perf_model(device, tp, eng) for tp in (2, 4, 8)}
        err = []
        for r in rows:
            pre, dec = predict_step(pms[r.tp], r)
            if not r.anomalous_prefill:
                err.append(math.log(pre / r.prompt_ms))
            err.append(math.log(dec / r.token_ms))
        return float(np.mean(np.abs(err)))

    x = nelder_mead(loss, [math.log(250), math.log(20), math.log(20)], iters=300, tol=1e-9)
    return unpack(x)


def fit(data: Path) -> None:
    gemms, allred, steps = load_gemms(data), load_allreduce(data), load_steps(data)
    attn = attention_ceilings(data)
    for name in ("A100-80GB", "H100-SXM"):
        dev = HARDWARE[name]
        fitted = fit_gemm(dev, gemms[name])
        fitted |= fit_allreduce(dataclasses.replace(dev, **fitted), *allred[name])
        fitted["attn_eff"] = attn[name]
        fitted |= fit_steps(dataclasses.replace(dev, **fitted), steps)
        print(f"{name}: " + ", ".join(f'"{k}": {v:.4g}' for k, v in fitted.items()))


# ---- report ----------------------------------------------------------------------------------
def _pct(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def _summary(name: str, errs: Sequence[float]) -> str:
    a = np.abs(np.asarray(errs))
    return (f"{name}: n={len(a)} median |err|={np.median(a):.1f}% p90={np.percentile(a, 90):.1f}% "
            f"max={a.max():.1f}% mean signed={np.mean(errs):+.1f}%")


def report(data: Path, show_ops: bool) -> float:
    steps = load_steps(data)
    print("# step latencies: splitwise llama2-70b (median of repeats) vs analytical model")
    print("# skipped: h100-80gb-pcap (derived from h100-80gb, not measured) and bloom-176b (not in the catalogue)")
    print(f"{'config':44s} {'phase':8s} {'measured ms':>12s} {'predicted ms':>13s} {'error %':>8s}")
    step_errs: dict[str, list[float]] = defaultdict(list)
    all_errs: list[float] = []
    pms = {(h, tp): perf_model(HARDWARE[h], tp) for h in DEVICES.values() for tp in (2, 4, 8)}
    for r in steps:
        pre, dec = predict_step(pms[(r.hardware, r.tp)], r)
        for phase, meas, pred in (("prefill", r.prompt_ms, pre), ("decode", r.token_ms, dec)):
            e = _pct(pred, meas)
            flag = "  (documented anomaly)" if phase == "prefill" and r.anomalous_prefill else ""
            print(f"{r.label:44s} {phase:8s} {meas:12.2f} {pred:13.2f} {e:+8.1f}{flag}")
            step_errs[f"{r.hardware} {phase}"].append(e)
            all_errs.append(e)
    op_errs: dict[str, list[float]] = defaultdict(list)
    have_ops = (data / "vidur_profiling").is_dir()
    if not have_ops:
        print(f"\n# operators and collectives skipped: no vidur_profiling/ in {data}")
    else:
        print("\n# operators: Vidur mlp.csv GEMM medians vs analytical gemm()")
    for name, rows in (load_gemms(data) if have_ops else {}).items():
        pred = predict_gemms(HARDWARE[name], rows)
        errs = 100.0 * (pred - rows.ms) / rows.ms
        for lab in np.unique(rows.label):
            sel = rows.label == lab
            print(_summary(f"{name} {lab}", errs[sel]))
            if show_ops:
                for t, tp, m, p in zip(rows.tokens[sel], rows.tp[sel], rows.ms[sel], pred[sel], strict=True):
                    print(f"    tp{tp} tokens={int(t):5d} measured={m:8.3f} predicted={p:8.3f} {_pct(p, m):+6.1f}%")
        op_errs[name] = list(errs)
    if have_ops:
        print("\n# collectives: Vidur single-node all_reduce medians vs allreduce_time()")
    for name, (w, b, ms) in (load_allreduce(data) if have_ops else {}).items():
        pred = predict_allreduce(HARDWARE[name], w, b)
        print(_summary(f"{name} all_reduce", 100.0 * (pred - ms) / ms))
    print("\n# summary")
    for k, v in step_errs.items():
        print(_summary(f"steps {k}", v))
    for k, v in op_errs.items():
        print(_summary(f"GEMM operators {k}", v))
    print(_summary("all step latencies", all_errs))
    no_anom = [e for i, e in enumerate(all_errs) if not (i % 2 == 0 and steps[i // 2].anomalous_prefill)]
    print(_summary("step latencies without the 2 documented anomalies", no_anom))
    median = float(np.median(np.abs(all_errs)))
    return median


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="calibration data directory")
    ap.add_argument("--fit", action="store_true", help="refit the device constants and print them")
    ap.add_argument("--ops", action="store_true", help="print every operator row, not only summaries")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"calibration data not found at {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.fit:
        fit(args.data)
        print(f"fit took {time.perf_counter() - t0:.1f} s")
        return 0
    median = report(args.data, args.ops)
    print(f"(report took {time.perf_counter() - t0:.1f} s)")
    print(f"median_abs_pct_error={median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
