"""How much memory a simulation of a validated spec may need, before it is built.

Why: a server runs many sessions in one process, and the size of a session is set by its
spec (clients, requests, closed-loop users, trace rows, reasoning branches). Estimating it
from the spec lets the server refuse a session past a per-session cap with an error that
names the field responsible, instead of finding out when the process runs out of memory.

The estimate is an upper bound for the Python objects the engine keeps, per unit:

* ``REQUEST_BYTES`` per request the run may see (its in-flight object, its columnar record,
  its stage records, its events); the worst case has every request in flight at once;
* ``STAGE_BYTES`` more per executed stage, ``BRANCH_BYTES`` per extra reasoning branch;
* ``CLIENT_BYTES`` per client (state plus memoised step costs) and 8 bytes per KV block slot;
* ``USER_BYTES`` per closed-loop user, ``TRACE_ROW_BYTES`` per trace row (while it is read).

The constants were measured with tracemalloc (tests/test_hostile_specs.py checks that the
estimate stays above what a run really allocates) and rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import SimSpec

BASE_BYTES = 1 << 20
CLIENT_BYTES = 128 << 10
REQUEST_BYTES = 2048
STAGE_BYTES = 128
BRANCH_BYTES = 1024
USER_BYTES = 512
TRACE_ROW_BYTES = 256
MIN_GAP_S = 1e-3  # a closed-loop user bounded only by duration: at most one request per ms


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes in total and per spec field (the field a user would change to shrink it)."""

    total_bytes: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def dominant_field(self) -> str:
        return max(self.parts, key=self.parts.__getitem__) if self.parts else "spec"


def expected_requests(spec: SimSpec) -> tuple[int, str]:
    """An upper bound on the requests a run sees from its own workload, and the field that sets it."""
    w = spec.workload
    bounds: list[tuple[float, str]] = []
    if w.num_requests is not None:
        bounds.append((w.num_requests, "workload.num_requests"))
    if spec.max_requests is not None:
        bounds.append((spec.max_requests, "limits.max_requests"))
    if w.arrival == "trace":
        info = spec.traces.get("workload.arrival.trace")
        if info is not None:
            bounds.append((info.rows, "workload.arrival.trace"))
    if w.duration_s is not None:
        if w.arrival in ("poisson", "gamma", "constant"):
            # Poisson counts rarely exceed mean + 10 sqrt(mean) + 10
            mean = w.arrival_params["rate"] * w.duration_s
            bounds.append((mean + 10 * mean ** 0.5 + 10, "workload.duration_s"))
        elif w.arrival == "closed_loop":
            per_user = w.duration_s / max(w.arrival_params["think_time_s"], MIN_GAP_S)
            bounds.append((w.arrival_params["users"] * (per_user + 1), "workload.duration_s"))
    if w.arrival == "none":
        bounds.append((0, "workload.arrival"))
    if not bounds:
        return 0, "workload"
    n, where = min(bounds)
    return int(n), where


def estimate_memory_bytes(spec: SimSpec) -> MemoryEstimate:
    """An upper-bound estimate of the memory a simulation of ``spec`` keeps (see the module notes).

    Requests injected from outside are not in the spec: each costs about ``REQUEST_BYTES``
    more, and ``limits.max_requests`` caps them (``Simulation.inject`` raises LimitError).
    """
    parts: dict[str, int] = {"spec": BASE_BYTES}
    clients = sum(CLIENT_BYTES + 8 * c.scheduler.block_size for c in spec.clients)
    parts["clients"] = clients
    n, where = expected_requests(spec)
    stages = max((len(p) for p in spec.pipelines.values()), default=1)
    branches = max((st.params.get("reasoning", {}).get("branches", 1)
                    for p in spec.pipelines.values() for st in p), default=1)
    per_request = REQUEST_BYTES + STAGE_BYTES * stages + BRANCH_BYTES * (branches - 1)
    parts[where] = parts.get(where, 0) + n * per_request
    if spec.workload.arrival == "closed_loop":
        parts["workload.arrival.users"] = spec.workload.arrival_params["users"] * USER_BYTES
    for trace_field, info in spec.traces.items():
        parts[trace_field] = parts.get(trace_field, 0) + info.rows * TRACE_ROW_BYTES
    return MemoryEstimate(sum(parts.values()), parts)
