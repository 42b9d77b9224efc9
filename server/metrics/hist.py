"""Bucket sets and a histogram that takes bulk, weighted observations and merges with others."""

from __future__ import annotations

import numpy as np

# fmt: off
# vLLM's buckets (vllm/v1/metrics/loggers.py)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TOKEN_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                           50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# vLLM builds 1-2-5 token buckets up to max_model_len; HERMES fixes the bound at 1M tokens
TOKEN_COUNT_BUCKETS = tuple(float(m * 10**e) for e in range(7) for m in (1, 2, 5) if m * 10**e <= 10**6)
# HERMES' own
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 7680.0)
RPC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
               1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# fmt: on


class Hist:
    """A classic histogram with bulk, weighted observations (per-bucket counts, +Inf last)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] | np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add values (`le` semantics: a value equal to a bound falls in that bucket)."""
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return
        idx = np.searchsorted(self.bounds, values, side="left")
        if weights is None:
            self.counts += np.bincount(idx, minlength=self.counts.size)
            self.total += float(values.sum())
        else:
            w = np.asarray(weights, dtype=np.int64)
            self.counts += np.bincount(idx, weights=w, minlength=self.counts.size).astype(np.int64)
            self.total += float(np.dot(values, w))

    def add(self, other: Hist) -> None:
        """Fold another histogram with the same buckets into this one."""
        self.counts += other.counts
        self.total += other.total

    def copy(self) -> Hist:
        h = Hist(self.bounds)
        h.add(self)
        return h

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def exposition(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs ending with +Inf."""
        cum = np.cumsum(self.counts).tolist()
        return [(repr(float(b)), c) for b, c in zip(self.bounds.tolist(), cum[:-1], strict=True)] + [
            ("+Inf", cum[-1])
        ]
