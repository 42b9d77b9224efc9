"""The contract every performance model honours.

A performance model answers one question: how long does one batch step of an
LLM client take, and what does it cost in energy. The scheduler calls
``step`` for general steps and ``decode_steps`` to cost a run of consecutive
decode-only steps in one vectorised call (the hot loop's closed form).
``decode_steps(n, np.array([s]))`` must equal ``step((), n, s)`` exactly, so a
run advanced in closed form is bit-identical to stepping it one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class StepCost:
    """Cost of one batch step on one client (all devices of the client together)."""

    time_s: float  # wall time of the step, fixed overhead included
    compute_s: float  # time the step would take if only compute counted
    memory_s: float  # time the step would take if only memory traffic counted
    comm_s: float  # tensor/pipeline-parallel communication time
    energy_j: float  # energy drawn by all devices of the client during the step

    @property
    def compute_bound(self) -> bool:
        return self.compute_s >= self.memory_s


class PerfModel(Protocol):
    """How long a batch step takes on one client (hardware x count, model, parallelism)."""

    def step(self, prefills: Sequence[tuple[int, int]], n_decode: int, decode_ctx_sum: int) -> StepCost:
        """Cost of one step.

        prefills: one (tokens already in KV, new prompt tokens this step) per prefill chunk.
        n_decode: sequences that each decode one token this step.
        decode_ctx_sum: sum over those sequences of their KV context length (tokens
        already cached before this step's token).
        """
        ...

    def decode_steps(self, n_decode: int, ctx_sums: np.ndarray, group: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and energies (J) of decode-only steps, one per entry of ctx_sums (int64), run in
        multi-step groups of ``group`` steps (a group's later steps are not scheduled by the host)."""
        ...
