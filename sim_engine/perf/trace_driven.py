"""Trace-driven performance model: measured times, interpolated; analytical outside their range.

Two measured formats are read (the format is recognised from the CSV header):

* **splitwise** (``splitwise_perf_model.csv``: model, hardware, prompt_size, batch_size,
  token_size, ..., prompt_time, token_time, e2e_time, tensor_parallel; times in ms).
  Medians of the repeats. Prefill time is interpolated over the batch's tokens
  (prompt_size x batch_size; configurations with the same token count are averaged; a point
  under half the time of a point with fewer tokens, like the documented TP2 batch-64
  anomaly, is dropped as a failed run). Decode time of ``n`` sequences with context
  sum ``S`` is ``f(n) + n * (g(S / n) - g(c0))``: ``f`` the batch sweep (mean context c0),
  ``g`` the batch-1 prompt and output sweeps, each row placed at its mean decode context
  ``prompt + (output - 2) / 2``. Chunk past context and decode tokens in a mixed step add
  their analytical attention time. Energy uses the analytical model's power for the step.
* **vidur** (``mlp.csv``: per-operator medians of one transformer layer for one TP degree,
  ms, over ``num_tokens``). Each operator is interpolated over the step's tokens and summed
  (layers x per-layer operators, the residual add twice, the embedding once); attention,
  all-reduces, the LM head and host overheads come from the analytical model.

Outside the measured range (tokens, batch size or mean context) the whole step is costed by the
analytical model. ``decode_steps`` and ``step`` share one vectorised formula, so they agree
bit for bit.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim_engine.errors import SpecError
from sim_engine.hardware import Device
from sim_engine.models import ModelArch
from sim_engine.perf.analytical import AnalyticalPerfModel
from sim_engine.perf.base import StepCost

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "perf"
# bundled measurements: (device preset, model preset, format) -> file in DATA_DIR
BUNDLED: dict[tuple[str, str, str], str] = {
    ("A100-80GB", "Llama-2-70B", "splitwise"): "splitwise_llama2-70b.csv",
    ("H100-SXM", "Llama-2-70B", "splitwise"): "splitwise_llama2-70b.csv",
    ("A100-80GB", "Llama-2-7B", "vidur"): "vidur_a100_Llama-2-7b-hf_mlp.csv",
    ("H100-SXM", "Llama-2-7B", "vidur"): "vidur_h100_Llama-2-7b-hf_mlp.csv",
}
_SPLITWISE_HW = {"A100-80GB": "a100-80gb", "H100-SXM": "h100-80gb"}
_VIDUR_LAYER_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
                    "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add", "add")
_FIELD = "perf.trace_path"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _drop_collapses(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points under half the time of a point with fewer tokens (failed runs, not noise)."""
    keep = np.ones(len(xs), dtype=bool)
    best = -np.inf
    for i, y in enumerate(ys):
        if y < 0.5 * best:
            keep[i] = False
        else:
            best = max(best, y)
    return xs[keep], ys[keep]


def _table(points: dict[float, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (x, mean of the y measured at x) arrays."""
    xs = np.array(sorted(points), dtype=float)
    return xs, np.array([statistics.fmean(points[x]) for x in xs])


def resolve_trace(device: Device, model: ModelArch, trace_path: str | Path | None,
                  trace_format: str | None) -> Path:
    """The CSV to read: ``trace_path`` (absolute, relative, or a bundled file name) or a bundled one."""
    if trace_path is None:
        formats = (trace_format,) if trace_format else ("splitwise", "vidur")
        for fmt in formats:
            name = BUNDLED.get((device.name, model.name, fmt))
            if name:
                return DATA_DIR / name
        have = ", ".join(f"{m} on {d} ({f})" for d, m, f in BUNDLED)
        raise SpecError(_FIELD, f"no bundled trace for {model.name} on {device.name}; bundled: {have}; "
                                f"give perf.trace_path")
    path = Path(trace_path)
    if not path.is_file() and not path.is_absolute() and (DATA_DIR / path).is_file():
        path = DATA_DIR / path
    if not path.is_file():
        raise SpecError(_FIELD, f"trace file not found: {trace_path}")
    return path


class TraceDrivenPerfModel:
    """Measured step or operator times of one client, interpolated; analytical fallback."""

    def __init__(self, device: Device, model: ModelArch, tp: int = 1, pp: int = 1,
                 trace_path: str | Path | None = None, trace_format: str | None = None,
                 trace_model: str | None = None, trace_hardware: str | None = None,
                 **analytical_options: Any) -> None:
        if trace_format not in (None, "splitwise", "vidur"):
            raise SpecError("perf.trace_format", f"must be 'splitwise' or 'vidur', got {trace_format!r}")
        self.fallback = AnalyticalPerfModel(device, model, tp, pp, **analytical_options)
        self.device, self.model, self.tp, self.pp = device, model, tp, pp
        self.path = resolve_trace(device, model, trace_path, trace_format)
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = set(rows[0]) if rows else set()
        if {"prompt_time", "token_time", "tensor_parallel"} <= header:
            self.format = "splitwise"
            self._load_splitwise(rows, trace_model, trace_hardware)
        elif {"time_stats.attn_pre_proj.median", "num_tokens", "num_tensor_parallel_workers"} <= header:
            self.format = "vidur"
            self._load_vidur(rows)
        else:
            raise SpecError(_FIELD, f"{self.path.name}: unrecognised trace format (neither a Splitwise "
                                    "perf_model.csv nor a Vidur mlp.csv)")
        if trace_format and trace_format != self.format:
            raise SpecError("perf.trace_format", f"{self.path.name} is a {self.format} trace, not {trace_format}")
        self._fixed_memo: dict[int, tuple[float, float]] = {}

    # ---- loading --------------------------------------------------------------------------
    def _load_splitwise(self, rows: list[dict[str, str]], trace_model: str | None,
                        trace_hardware: str | None) -> None:
        if self.pp != 1:
            raise SpecError("pp", "a Splitwise trace has tensor-parallel measurements only (pp must be 1)")
        want_m = _norm(trace_model or self.model.name)
        want_h = _norm(trace_hardware or _SPLITWISE_HW.get(self.device.name, self.device.name))
        mine = [r for r in rows if _norm(r["model"]) == want_m and _norm(r["hardware"]) == want_h
                and int(r["tensor_parallel"]) == self.tp]
        if not mine:
            have = sorted({(r["model"], r["hardware"], int(r["tensor_parallel"])) for r in rows})
            raise SpecError(_FIELD, f"{self.path.name} has no rows for model {want_m!r} on {want_h!r} at "
                                    f"tp={self.tp} (set perf.trace_model / perf.trace_hardware); it has {have}")
        reps: dict[tuple[int, int, int], list[tuple[float, float]]] = defaultdict(list)
        for r in mine:
            key = (int(r["prompt_size"]), int(r["batch_size"]), int(r["token_size"]))
            reps[key].append((float(r["prompt_time"]), float(r["token_time"])))
        prompt_reps: dict[tuple[int, int], list[float]] = defaultdict(list)  # prefill ignores the output length
        for (prompt, b, _), v in reps.items():
            prompt_reps[(prompt, b)].extend(x for x, _ in v)
        prefill: dict[float, list[float]] = defaultdict(list)
        for (prompt, b), v in prompt_reps.items():
            prefill[float(prompt * b)].append(statistics.median(v) * 1e-3)
        batch: dict[float, list[float]] = defaultdict(list)
        single: dict[float, list[float]] = defaultdict(list)
        sweeps: dict[tuple[int, int], set[int]] = defaultdict(set)
        for prompt, b, out in reps:
            sweeps[(prompt, out)].add(b)
        base = max(sweeps, key=lambda k: len(sweeps[k]))  # (prompt, output) of the batch sweep
        for (prompt, b, out), v in reps.items():
            t_med = statistics.median(x for _, x in v) * 1e-3
            ctx = prompt + (out - 2) / 2  # mean cached context over the measured decode steps
            if b == 1:
                single[ctx].append(t_med)
            if (prompt, out) == base:
                batch[float(b)].append(t_med)
        self._pf_x, self._pf_y = _drop_collapses(*_table(prefill))
        self._b_x, self._b_y = _table(batch)
        self._c_x, self._c_y = _table(single)
        self._g0 = float(np.interp(base[0] + (base[1] - 2) / 2, self._c_x, self._c_y))

    def _load_vidur(self, rows: list[dict[str, str]]) -> None:
        mine = [r for r in rows if int(r["num_tensor_parallel_workers"]) == self.tp]
        if not mine:
            have = sorted({int(r["num_tensor_parallel_workers"]) for r in rows})
            raise SpecError(_FIELD, f"{self.path.name} has no rows for tp={self.tp}; it has tp {have}")
        m, r0 = self.model, mine[0]
        for col, want in (("n_embd", m.hidden), ("n_head", m.n_heads), ("n_kv_head", m.n_kv_heads),
                          ("n_expanded_embd", m.ffn_dim)):
            if int(r0[col]) != want:
                raise SpecError(_FIELD, f"{self.path.name} profiles {col}={r0[col]}, but {m.name} has {want}")
        ops = [op for op in dict.fromkeys(_VIDUR_LAYER_OPS) if f"time_stats.{op}.median" in r0]
        by_tokens: dict[float, list[float]] = defaultdict(list)
        emb: dict[float, list[float]] = defaultdict(list)
        for r in mine:
            t = float(r["num_tokens"])
            layer = sum(float(r[f"time_stats.{op}.median"]) * _VIDUR_LAYER_OPS.count(op) for op in ops)
            by_tokens[t].append(layer * 1e-3)
            emb[t].append(float(r.get("time_stats.emb.median") or 0.0) * 1e-3)
        self._op_x, self._layer_y = _table({k: [statistics.median(v)] for k, v in by_tokens.items()})
        self._emb_y = _table({k: [statistics.median(v)] for k, v in emb.items()})[1]
        # the final norm runs once per step, like one input_layernorm
        norm = {float(r["num_tokens"]): float(r["time_stats.input_layernorm.median"]) * 1e-3 for r in mine}
        self._norm_y = np.array([norm[x] for x in self._op_x])

    # ---- shared pieces ----------------------------------------------------------------------
    def _vidur_ops(self, tokens: int, seqs: int) -> tuple[float, float]:
        """(time, active) of everything but attention for a step of ``tokens`` tokens (vidur format)."""
        fb = self.fallback
        ops = (float(np.interp(tokens, self._op_x, self._layer_y)) * self.model.n_layers
               + float(np.interp(tokens, self._op_x, self._emb_y))
               + float(np.interp(tokens, self._op_x, self._norm_y)))
        comm = fb.comm_time(tokens)
        head = fb.lm_head(fb.lm_rows(seqs))
        busy = ops + comm + head[3]
        gpu = ops + comm + head[0]
        serial, hidden = fb.host_split(tokens, seqs)
        time = gpu + serial
        if hidden:  # the engine's overlapped host time, where these kernels do not cover it
            time += max(hidden - gpu, 0.0)
        return time, busy

    def _in_range(self, tokens: int) -> bool:
        xs = self._pf_x if self.format == "splitwise" else self._op_x
        return xs[0] <= tokens <= xs[-1]

    # ---- PerfModel protocol -----------------------------------------------------------------
    def step(self, prefills: Sequence[tuple[int, int]], n_decode: int, decode_ctx_sum: int) -> StepCost:
        if not prefills:
            if n_decode <= 0:
                return StepCost(0.0, 0.0, 0.0, 0.0, 0.0)
            times, energies = self.decode_steps(n_decode, np.array([decode_ctx_sum], dtype=np.int64))
            a = self.fallback.step((), n_decode, decode_ctx_sum)
            return self._scaled(a, float(times[0]), float(energies[0]))
        tokens = n_decode + sum(new for _, new in prefills)
        a = self.fallback.step(prefills, n_decode, decode_ctx_sum)
        if not self._in_range(tokens):
            return a
        fb = self.fallback
        attn = fb.prefill_attention(prefills)
        if self.format == "splitwise":
            # the trace covers fresh prompts: add what chunk past context and decodes cost on top
            fresh = fb.prefill_attention([(0, new) for _, new in prefills])
            time = float(np.interp(tokens, self._pf_x, self._pf_y)) + (attn[0] - fresh[0])
            if n_decode:
                time += fb.decode_attention(n_decode, decode_ctx_sum)[0]
            return self._scaled(a, time, a.energy_j * time / a.time_s)
        time, busy = self._vidur_ops(tokens, len(prefills) + n_decode)
        time += attn[0]
        busy += attn[3]
        if n_decode:
            d = fb.decode_attention(n_decode, decode_ctx_sum)
            time += d[0]
            busy += d[3]
        return self._scaled(a, time, fb.energy(time, busy))

    def decode_steps(self, n_decode: int, ctx_sums: np.ndarray, group: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Measured steps keep the host time they were measured with; ``group`` applies to the
        analytical ones."""
        ctx = np.asarray(ctx_sums, dtype=np.int64)
        a_time, a_energy = self.fallback.decode_steps(n_decode, ctx, group)
        if n_decode <= 0:
            return a_time, a_energy
        fb = self.fallback
        if self.format == "splitwise":
            mean_ctx = ctx / n_decode
            ok = ((self._b_x[0] <= n_decode <= self._b_x[-1])
                  & (mean_ctx >= self._c_x[0]) & (mean_ctx <= self._c_x[-1]))
            f = float(np.interp(n_decode, self._b_x, self._b_y))
            time = f + n_decode * (np.interp(mean_ctx, self._c_x, self._c_y) - self._g0)
            energy = a_energy * (time / a_time)
        else:
            ok = np.full(ctx.shape, self._in_range(n_decode))
            fixed = self._fixed_memo.get(n_decode)
            if fixed is None:
                fixed = self._fixed_memo[n_decode] = self._vidur_ops(n_decode, n_decode)
            d_time, _, _, d_busy = fb.decode_attention(n_decode, ctx, np.maximum)
            time = fixed[0] + d_time
            energy = fb.energy(time, fixed[1] + d_busy, np.minimum)
        return np.where(ok, time, a_time), np.where(ok, energy, a_energy)

    @property
    def engine(self):
        return self.fallback.engine

    def max_kv_tokens(self, gpu_memory_utilization: float = 0.9, activation_reserve_frac: float | None = None) -> int:
        return self.fallback.max_kv_tokens(gpu_memory_utilization, activation_reserve_frac)

    @staticmethod
    def _scaled(a: StepCost, time: float, energy: float) -> StepCost:
        """The analytical breakdown rescaled to the measured step time."""
        k = time / a.time_s if a.time_s else 0.0
        return StepCost(time, a.compute_s * k, a.memory_s * k, a.comm_s * k, energy)


__all__ = ["BUNDLED", "TraceDrivenPerfModel", "resolve_trace"]
