"""Performance models: how long a batch step of one client takes, and its energy.

``build_perf_model`` is the one entry point the simulator uses; a client's spec picks the kind
(``analytical`` or ``trace``) and passes the kind's options.
"""

from __future__ import annotations

import inspect
from typing import Any

from sim_engine.errors import SpecError
from sim_engine.hardware import Device
from sim_engine.models import ModelArch
from sim_engine.perf.analytical import AnalyticalPerfModel, check_parallelism, kv_capacity_tokens
from sim_engine.perf.base import PerfModel, StepCost
from sim_engine.perf.trace_driven import TraceDrivenPerfModel

PERF_KINDS: dict[str, type] = {"analytical": AnalyticalPerfModel, "trace": TraceDrivenPerfModel}


def _options(cls: type) -> set[str]:
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "device", "model", "tp", "pp"}
    if cls is TraceDrivenPerfModel:
        names = (names - {"analytical_options"}) | _options(AnalyticalPerfModel)
    return names


def build_perf_model(device: Device, model: ModelArch, tp: int = 1, pp: int = 1, kind: str = "analytical",
                     trace_path: str | None = None, **options: Any) -> PerfModel:
    """The performance model of a client of ``tp * pp`` ``device``s serving ``model``.

    Unknown kinds and options raise SpecError naming ``perf.kind`` / ``perf.<option>``.
    """
    cls = PERF_KINDS.get(kind)
    if cls is None:
        raise SpecError("perf.kind", f"unknown performance model {kind!r}; known: {', '.join(PERF_KINDS)}")
    allowed = _options(cls)
    for key in options:
        if key not in allowed:
            raise SpecError(f"perf.{key}", f"unknown option for kind {kind!r}; known: {', '.join(sorted(allowed))}")
    if cls is TraceDrivenPerfModel:
        return TraceDrivenPerfModel(device, model, tp, pp, trace_path=trace_path, **options)
    if trace_path is not None:
        raise SpecError("perf.trace_path", "only the 'trace' kind reads a trace")
    return AnalyticalPerfModel(device, model, tp, pp, **options)


__all__ = [
    "PERF_KINDS",
    "AnalyticalPerfModel",
    "PerfModel",
    "StepCost",
    "TraceDrivenPerfModel",
    "build_perf_model",
    "check_parallelism",
    "kv_capacity_tokens",
]
