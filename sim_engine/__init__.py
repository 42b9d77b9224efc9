"""HERMES simulator core: a deterministic discrete-event simulator of LLM serving.

A plain library (no gRPC, no Prometheus): build a ``Simulation`` from a spec and
run it to the end, or step it in lockstep from outside. See docs/ENGINE_API.md.
"""

from .errors import (
    AlreadyExistsError,
    LimitError,
    NotFoundError,
    OutOfRangeError,
    PreconditionError,
    SpecError,
    UnknownReferenceError,
)
from .memory import MemoryEstimate, estimate_memory_bytes
from .request import RequestInput
from .safe_yaml import parse_yaml
from .simulation import Simulation
from .spec import SimSpec, load_spec, spec_presets
from .units import MAX_TIME_NS, NS_PER_S
from .views import (
    AdvanceResult,
    BatchAnswer,
    BatchDecision,
    BatchItem,
    BatchRequestView,
    ClientState,
    ClusterState,
    Decision,
    DecisionAnswer,
    Event,
    StopReason,
)

__all__ = [
    "AdvanceResult", "AlreadyExistsError", "BatchAnswer", "BatchDecision", "BatchItem", "BatchRequestView", "ClientState", "ClusterState", "Decision", "DecisionAnswer", "Event",
    "LimitError", "MAX_TIME_NS", "MemoryEstimate", "NS_PER_S", "NotFoundError", "OutOfRangeError", "PreconditionError", "RequestInput",
    "SimSpec", "Simulation", "SpecError", "StopReason", "UnknownReferenceError", "estimate_memory_bytes", "load_spec", "parse_yaml",
    "spec_presets",
]
