"""Workloads: arrival processes, request length distributions and trace replay.

Sources are small stateful objects (not generators) so a simulation can be
pickled, forked and restored mid-run. Random draws come in blocks from the
source's own numpy stream, so the values depend only on the seed.

Lengths come either from two independent distributions (``prompt_tokens``,
``output_tokens``) or as (prompt, output) pairs drawn together from a trace's rows
(``lengths``), which keeps their correlation, as trace replayers and Vidur do; a
total-length cap then drops or clips the whole pair.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SpecError
from .spec import LengthSpec, PairLengthSpec, WorkloadSpec, resolve_data_path
from .units import MAX_TIME_NS, NS_PER_S

_BLOCK = 1024


@dataclass(frozen=True)
class Trace:
    """A request trace: arrival seconds (may be empty) and token counts."""

    arrived_at: np.ndarray  # float64 seconds, non-decreasing; empty when the trace has no times
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64


def load_trace(path: Path, field: str) -> Trace:
    """Read an Azure-2023-style CSV (arrived_at,num_prefill_tokens,num_decode_tokens).

    The arrival column is optional (length-only traces); errors name the file and line.
    """
    try:
        handle = path.open(newline="")
    except OSError as e:
        raise SpecError(field, f"cannot read {path}: {e.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise SpecError(field, f"{path}: empty file")
        header = [h.strip() for h in header]
        for col in ("num_prefill_tokens", "num_decode_tokens"):
            if col not in header:
                raise SpecError(field, f"{path}: missing column {col!r} (header: {','.join(header)})")
        i_p, i_d = header.index("num_prefill_tokens"), header.index("num_decode_tokens")
        i_t = header.index("arrived_at") if "arrived_at" in header else None
        times: list[float] = []
        prompts: list[int] = []
        outputs: list[int] = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                p, d = int(float(row[i_p])), int(float(row[i_d]))
                t = float(row[i_t]) if i_t is not None else 0.0
            except (ValueError, IndexError):
                raise SpecError(field, f"{path}:{lineno}: not a number in {','.join(row)!r}") from None
            if p < 1 or d < 1:
                raise SpecError(field, f"{path}:{lineno}: token counts must be >= 1, got {p},{d}")
            if i_t is not None:
                if not np.isfinite(t) or t < 0:
                    raise SpecError(field, f"{path}:{lineno}: arrival must be a finite time >= 0, got {t}")
                if times and t < times[-1]:
                    raise SpecError(field, f"{path}:{lineno}: arrivals must not go back in time")
                times.append(t)
            prompts.append(p)
            outputs.append(d)
    if not prompts:
        raise SpecError(field, f"{path}: no requests")
    return Trace(np.asarray(times, dtype=np.float64), np.asarray(prompts, dtype=np.int64),
                 np.asarray(outputs, dtype=np.int64))


def cap_pairs(trace: Trace, cap: int | None, over_cap: str) -> Trace:
    """The trace with every (prompt, output) pair over ``cap`` total tokens dropped (row and arrival
    together) or clipped to ``cap`` keeping its prompt:output ratio (each side at least 1 token)."""
    if cap is None:
        return trace
    p, o = trace.prompt_tokens, trace.output_tokens
    over = p + o > cap
    if over_cap == "drop":
        keep = ~over
        times = trace.arrived_at[keep] if len(trace.arrived_at) else trace.arrived_at
        return Trace(times, p[keep], o[keep])
    clipped = np.clip(p * cap // (p + o), 1, cap - 1)
    p2 = np.where(over, clipped, p)
    return Trace(trace.arrived_at, p2, np.where(over, cap - p2, o))


class PairSampler:
    """Draws (prompt, output) pairs together: uniformly random rows of a trace, capped."""

    def __init__(self, spec: PairLengthSpec, rng: np.random.Generator, base_dir: Path | None, field: str):
        assert spec.trace is not None
        trace = load_trace(resolve_data_path(spec.trace, base_dir, f"{field}.trace"), f"{field}.trace")
        trace = cap_pairs(trace, spec.max_total_tokens, spec.over_cap)
        if len(trace.prompt_tokens) == 0:
            raise SpecError(f"{field}.max_total_tokens", f"no (prompt, output) pair of {spec.trace} is within "
                            f"{spec.max_total_tokens} tokens")
        self.prompts, self.outputs, self.rng = trace.prompt_tokens, trace.output_tokens, rng
        self._buf: list[tuple[int, int]] = []

    def sample(self) -> tuple[int, int]:
        if not self._buf:
            rows = self.rng.integers(0, len(self.prompts), _BLOCK)
            self._buf = list(zip(self.prompts[rows].tolist(), self.outputs[rows].tolist(), strict=True))[::-1]
        return self._buf.pop()


class LengthSampler:
    """Draws token counts from one distribution, clipped to [min, max]."""

    def __init__(self, spec: LengthSpec, rng: np.random.Generator, base_dir: Path | None, field: str):
        self.spec, self.rng = spec, rng
        self._buf: list[int] = []
        self._empirical: np.ndarray | None = None
        if spec.dist == "empirical":
            if "values" in spec.params:
                self._empirical = np.asarray(spec.params["values"], dtype=np.int64)
            else:
                trace = load_trace(resolve_data_path(spec.params["trace"], base_dir, f"{field}.trace"),
                                   f"{field}.trace")
                column = spec.params["column"]
                if column not in ("num_prefill_tokens", "num_decode_tokens"):
                    raise SpecError(f"{field}.column", "must be num_prefill_tokens or num_decode_tokens")
                self._empirical = trace.prompt_tokens if column == "num_prefill_tokens" else trace.output_tokens

    def _draw_block(self) -> np.ndarray:
        p, rng = self.spec.params, self.rng
        dist = self.spec.dist
        if dist == "fixed":
            x = np.full(_BLOCK, p["value"], dtype=np.float64)
        elif dist == "normal":
            x = rng.normal(p["mean"], p["std"], _BLOCK)
        elif dist == "lognormal":
            # mean is the distribution's mean: mu chosen so that E[X] = mean
            mu = np.log(p["mean"]) - p["sigma"] ** 2 / 2
            x = rng.lognormal(mu, p["sigma"], _BLOCK)
        elif dist == "uniform":
            x = rng.integers(p["low"], p["high"] + 1, _BLOCK).astype(np.float64)
        else:
            assert self._empirical is not None
            x = rng.choice(self._empirical, _BLOCK).astype(np.float64)
        x = np.rint(x)
        hi = self.spec.maximum if self.spec.maximum is not None else np.inf
        return np.clip(x, self.spec.minimum, hi).astype(np.int64)

    def sample(self) -> int:
        if not self._buf:
            self._buf = self._draw_block().tolist()[::-1]
        return self._buf.pop()


class ArrivalSource:
    """Open-loop arrivals: yields (arrival_ns, prompt_tokens, output_tokens) in time order."""

    def __init__(self, spec: WorkloadSpec, seed: np.random.SeedSequence, base_dir: Path | None,
                 max_requests: int | None):
        s_gap, s_prompt, s_output = seed.spawn(3)
        self.spec = spec
        self.rng = np.random.default_rng(s_gap)
        self.count = 0
        self.limit = min(x for x in (spec.num_requests, max_requests, MAX_TIME_NS) if x is not None)
        self.end_ns = int(spec.duration_s * NS_PER_S) if spec.duration_s is not None else None
        self.t_ns = 0
        self._gaps: list[float] = []
        self.trace: Trace | None = None
        self.prompt = LengthSampler(spec.prompt_tokens, np.random.default_rng(s_prompt), base_dir,
                                    "workload.prompt_tokens") if spec.prompt_tokens else None
        self.output = LengthSampler(spec.output_tokens, np.random.default_rng(s_output), base_dir,
                                    "workload.output_tokens") if spec.output_tokens else None
        pairs = spec.lengths
        self.pairs = PairSampler(pairs, np.random.default_rng(s_prompt), base_dir, "workload.lengths") \
            if pairs is not None and pairs.trace is not None else None
        if spec.arrival == "trace":
            self.trace = load_trace(resolve_data_path(spec.arrival_params["trace"], base_dir,
                                                      "workload.arrival.trace"), "workload.arrival.trace")
            if len(self.trace.arrived_at) == 0:
                raise SpecError("workload.arrival.trace", "trace has no arrived_at column")
            if pairs is not None and pairs.trace is None:  # the rows' own lengths, capped
                self.trace = cap_pairs(self.trace, pairs.max_total_tokens, pairs.over_cap)
            start = spec.arrival_params["start_s"]
            first = int(np.searchsorted(self.trace.arrived_at, start))
            self._trace_idx = first
            self._trace_t0 = start

    def _gap_s(self) -> float:
        if not self._gaps:
            p = self.spec.arrival_params
            rate = p["rate"]
            if self.spec.arrival == "poisson":
                block = self.rng.exponential(1.0 / rate, _BLOCK)
            elif self.spec.arrival == "gamma":
                shape = 1.0 / p["cv"] ** 2  # cv^2 = 1/shape for a gamma distribution
                block = self.rng.gamma(shape, 1.0 / (rate * shape), _BLOCK)
            else:
                block = np.full(_BLOCK, 1.0 / rate)
            self._gaps = block.tolist()[::-1]
        return self._gaps.pop()

    def next(self) -> tuple[int, int, int] | None:
        """The next request, or None when the workload is exhausted."""
        if self.count >= self.limit:
            return None
        if self.trace is not None:
            i = self._trace_idx
            if i >= len(self.trace.prompt_tokens):
                return None
            t = (self.trace.arrived_at[i] - self._trace_t0) * self.spec.arrival_params["time_scale"]
            t_ns = int(round(t * NS_PER_S))
            if self.pairs is not None:
                prompt, output = self.pairs.sample()
            else:
                prompt = int(self.trace.prompt_tokens[i]) if self.prompt is None else self.prompt.sample()
                output = int(self.trace.output_tokens[i]) if self.output is None else self.output.sample()
            self._trace_idx += 1
        else:
            if self.count > 0 or self.spec.arrival != "constant":
                self.t_ns += int(round(self._gap_s() * NS_PER_S))
            t_ns = self.t_ns
            prompt, output = self._lengths()
        if self.end_ns is not None and t_ns > self.end_ns:
            return None
        self.count += 1
        return t_ns, prompt, output

    def _lengths(self) -> tuple[int, int]:
        if self.pairs is not None:
            return self.pairs.sample()
        assert self.prompt is not None and self.output is not None
        return self.prompt.sample(), self.output.sample()


class ClosedLoopSource(ArrivalSource):
    """N users, each sending its next request a think time after its previous one ends."""

    def next_for_user(self, now_ns: int) -> tuple[int, int, int] | None:
        if self.count >= self.limit:
            return None
        t_ns = now_ns + int(round(self.spec.arrival_params["think_time_s"] * NS_PER_S))
        if self.end_ns is not None and t_ns > self.end_ns:
            return None
        self.count += 1
        return (t_ns, *self._lengths())
