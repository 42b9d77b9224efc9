"""A hash of a simulation's observable state, equal across processes for equal states.

Replaying the same commands on the same spec and seed must give the same state on
any replica; this digest is how a client checks it. It covers the clock, the event
count, the cluster state (queues, KV use, counters per client, links), the pending
decisions and every request and stage record. It avoids pickles (their bytes follow
set order, which follows PYTHONHASHSEED) and hashes canonical JSON and raw arrays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import numpy as np


def _arrays(h: Any, arrays: dict[str, np.ndarray]) -> None:
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.size};".encode())
        h.update(a.tobytes())


def state_digest(sim: Any) -> str:
    """Hex SHA-256 of `sim`'s state (a `Simulation`); cost is linear in the records kept."""
    h = hashlib.sha256()
    head = {
        "now_ns": int(sim.now_ns),
        "events": int(sim.kernel.events_processed),
        "state": sim.state().to_dict(),
        "decisions": [asdict(d) for d in sim.pending_decisions()],
    }
    batch = sim.pending_batch_decisions()
    if batch:  # only when there are some, so digests of sessions without external batching keep their value
        head["batch_decisions"] = [asdict(d) for d in batch]
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    _arrays(h, sim.records.arrays())
    _arrays(h, sim.stage_records.arrays())
    return h.hexdigest()
