"""The summary of a run: latency percentiles, throughput and per-client statistics.

Everything here is computed from the columnar request records and the clients'
counters, so it costs nothing while the simulation runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .client_api import llm_counters
from .latency import request_latencies
from .request import STATUS_ABORTED, STATUS_DROPPED
from .units import NS_PER_S

if TYPE_CHECKING:
    from .client_api import Client
    from .kernel import Kernel
    from .network import Network
    from .request import RequestRecords, StageRecords
    from .spec import SimSpec


class RunResults(Protocol):
    """What a summary reads of a simulation (so this module need not import ``Simulation``)."""

    spec: SimSpec
    kernel: Kernel
    network: Network
    kv: Any  # kv_tiers.KVHierarchy or None
    clients: list[Client]
    records: RequestRecords
    stage_records: StageRecords
    injected: int
    trace: list[tuple] | None


PERCENTILES = (50, 90, 99)


def stats(values: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """mean, p50, p90, p99 (and max) of a sample; weighted when weights are given."""
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    if weights is None:
        out = {"mean": float(values.mean())}
        for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
            out[f"p{p}"] = float(v)
    else:
        order = np.argsort(values, kind="stable")
        v, w = values[order], weights[order]
        cum = np.cumsum(w)
        total = cum[-1]
        out = {"mean": float(np.dot(v, w) / total)}
        for p in PERCENTILES:
            out[f"p{p}"] = float(v[min(int(np.searchsorted(cum, total * p / 100.0)), len(v) - 1)])
    out["max"] = float(values.max())
    return out


def request_metrics(sim: RunResults) -> dict[str, np.ndarray]:
    """Per-request latencies (seconds) of completed requests, in completion order."""
    return request_latencies(sim.records.arrays())


def summarize(sim: RunResults) -> dict[str, Any]:
    r = sim.records.arrays()
    m = request_metrics(sim)
    sim_time_s = sim.kernel.now / NS_PER_S
    span_s = sim_time_s if sim_time_s > 0 else 1.0
    n_done = int(m["e2e"].size)
    out_tok = int(m["output_tokens"].sum())
    in_tok = int(m["prompt_tokens"].sum())
    reasons: dict[str, int] = {}
    for reason in sim.records.drop_reasons.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    clients = []
    itl_v, itl_w = [], []
    for c in sim.clients:
        busy = c.busy_ns / NS_PER_S
        idle_s = max(sim_time_s - busy, 0.0)
        energy = c.energy_j + c.idle_w * idle_s
        llm = llm_counters(c)
        if len(llm.itl_values):
            itl_v.append(np.frombuffer(llm.itl_values, dtype=np.int64))
            itl_w.append(np.frombuffer(llm.itl_weights, dtype=np.int64))
        gen = llm.generation_tokens_total
        total_blocks = llm.total_blocks
        clients.append({
            "id": c.id,
            "hardware": c.spec.hardware.name if c.spec.hardware else "",
            "model": c.model,
            "tp": c.spec.tp,
            "pp": c.spec.pp,
            "role": c.spec.role,
            "batching": c.batching,
            "status": str(c.status),
            "utilization": busy / span_s / c.spec.concurrency,
            "steps": c.steps,
            "mean_batch_size": c.seq_sum / c.steps if c.steps else 0.0,
            "mean_batch_tokens": llm.token_sum / c.steps if c.steps else 0.0,
            "kv_total_blocks": total_blocks,
            "kv_mean_usage": llm.kv_integral / c.busy_ns / total_blocks if c.busy_ns and total_blocks else 0.0,
            "kv_peak_usage": llm.kv_peak / total_blocks if total_blocks else 0.0,
            "requests_completed": c.completed_total,
            "prompt_tokens": llm.prompt_tokens_total,
            "generation_tokens": gen,
            "preemptions": llm.preemptions_total,
            "prefix_cache_hit_rate": (llm.prefix_cache_hits / llm.prefix_cache_queries
                                      if llm.prefix_cache_queries else 0.0),
            "energy_j": energy,
            "energy_per_output_token_j": energy / gen if gen else 0.0,
        })
    itl = stats(np.concatenate(itl_v) / NS_PER_S, np.concatenate(itl_w)) if itl_v else stats(np.zeros(0))
    return {
        "name": sim.spec.name,
        "seed": sim.spec.seed,
        "sim_time_s": sim_time_s,
        "requests": {
            "injected": sim.injected,
            "completed": n_done,
            "dropped": int((r["status"] == STATUS_DROPPED).sum()),
            "aborted": int((r["status"] == STATUS_ABORTED).sum()),
            "in_flight": sim.injected - len(sim.records),
            "drop_reasons": reasons,
            "preemptions": int(r["preemptions"].sum()),
        },
        "latency_s": {
            "ttft": stats(m["ttft"]),
            "tpot": stats(m["tpot"][m["output_tokens"] > 1]),
            "itl": itl,
            "e2e": stats(m["e2e"]),
            "queue": stats(m["queue"]),
        },
        "throughput": {
            "requests_per_s": n_done / span_s,
            "output_tokens_per_s": out_tok / span_s,
            "total_tokens_per_s": (out_tok + in_tok) / span_s,
        },
        "tokens": {"prompt": in_tok, "output": out_tok},
        "energy_j": sum(c["energy_j"] for c in clients),
        "clients": clients,
        "stages": stage_summary(sim),
        "links": sim.network.link_stats(sim.kernel.now),
        "kv_cache": sim.kv.stats() if sim.kv is not None else {},
        "warnings": run_warnings(sim.injected, n_done, reasons),
    }


def run_warnings(injected: int, completed: int, drop_reasons: dict[str, int]) -> list[str]:
    """Plain-language notes on a run whose numbers would mislead (latency tables of zeros)."""
    out = []
    if injected == 0:
        out.append("no request arrived: the workload produced none (check workload.arrival and its bounds)")
    elif completed == 0 and drop_reasons:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(drop_reasons.items()))
        out.append(f"every request was dropped ({why}); the latency figures are empty")
    elif completed == 0:
        out.append("no request completed; the latency figures are empty")
    elif drop_reasons:
        dropped = sum(drop_reasons.values())
        if dropped > completed:
            out.append(f"most requests were dropped ({dropped} of {dropped + completed})")
    return out


def stage_summary(sim: RunResults) -> dict[str, dict]:
    """Per stage group: how many ran, input transfer, queueing and service times, bytes moved in."""
    from .views import STAGE_GROUPS, STAGE_KINDS

    st = sim.stage_records.arrays()

    def times(sel: np.ndarray) -> dict:
        return {
            "count": int(sel.sum()),
            "transfer_s": stats((st["enqueue_ns"][sel] - st["ready_ns"][sel]) / NS_PER_S),
            "queue_s": stats((st["start_ns"][sel] - st["enqueue_ns"][sel]) / NS_PER_S),
            "service_s": stats((st["end_ns"][sel] - st["start_ns"][sel]) / NS_PER_S),
            "bytes_in": int(st["bytes_in"][sel].sum()),
        }

    out = {}
    for code, group in enumerate(STAGE_GROUPS):
        sel = st["group"] == code
        if not sel.any():
            continue
        out[group] = times(sel)
        kinds = np.unique(st["kind"][sel])
        if len(kinds) > 1:  # e.g. rag: embed, search and rerank apart
            out[group]["parts"] = {STAGE_KINDS[k]: times(sel & (st["kind"] == k)) for k in kinds}
    return out
