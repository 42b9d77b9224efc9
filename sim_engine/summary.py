"""The summary of a run: latency percentiles, throughput and per-client statistics.

Everything here is computed from the columnar request records and the clients'
counters, so it costs nothing while the simulation runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .latency import request_latencies
from .request import STATUS_DROPPED
from .units import NS_PER_S as NS

if TYPE_CHECKING:
    from .simulation import Simulation

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


def request_metrics(sim: Simulation) -> dict[str, np.ndarray]:
    """Per-request latencies (seconds) of completed requests, in completion order."""
    return request_latencies(sim.records.arrays())


def summarize(sim: Simulation) -> dict[str, Any]:
    r = sim.records.arrays()
    m = request_metrics(sim)
    sim_time_s = sim.kernel.now / NS
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
        busy = c.busy_ns / NS
        idle_s = max(sim_time_s - busy, 0.0)
        energy = c.energy_j + c.idle_w * idle_s
        if len(getattr(c, "itl_values", ())):
            itl_v.append(np.frombuffer(c.itl_values, dtype=np.int64))
            itl_w.append(np.frombuffer(c.itl_weights, dtype=np.int64))
        gen = c.generation_tokens_total
        clients.append({
            "id": c.id,
            "hardware": c.spec.hardware.name if c.spec.hardware else "",
            "model": c.model,
            "tp": c.spec.tp,
            "pp": c.spec.pp,
            "role": c.spec.role,
            "batching": c.batching,
            "status": c.status,
            "utilization": busy / span_s / c.spec.concurrency,
            "steps": c.steps,
            "mean_batch_size": c.seq_sum / c.steps if c.steps else 0.0,
            "mean_batch_tokens": c.token_sum / c.steps if c.steps else 0.0,
            "kv_total_blocks": c.total_blocks,
            "kv_mean_usage": c.kv_integral / c.busy_ns / c.total_blocks if c.busy_ns and c.total_blocks else 0.0,
            "kv_peak_usage": c.kv_peak / c.total_blocks if c.total_blocks else 0.0,
            "requests_completed": c.completed_total,
            "prompt_tokens": c.prompt_tokens_total,
            "generation_tokens": gen,
            "preemptions": c.preemptions_total,
            "energy_j": energy,
            "energy_per_output_token_j": energy / gen if gen else 0.0,
        })
    itl = stats(np.concatenate(itl_v) / NS, np.concatenate(itl_w)) if itl_v else stats(np.zeros(0))
    return {
        "name": sim.spec.name,
        "seed": sim.spec.seed,
        "sim_time_s": sim_time_s,
        "requests": {
            "injected": sim.injected,
            "completed": n_done,
            "dropped": int((r["status"] == STATUS_DROPPED).sum()),
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
    }


def stage_summary(sim: Simulation) -> dict[str, dict]:
    """Per stage group: how many ran, input transfer, queueing and service times, bytes moved in."""
    from .views import STAGE_GROUPS, STAGE_KINDS

    st = sim.stage_records.arrays()

    def times(sel: np.ndarray) -> dict:
        return {
            "count": int(sel.sum()),
            "transfer_s": stats((st["enqueue_ns"][sel] - st["ready_ns"][sel]) / NS),
            "queue_s": stats((st["start_ns"][sel] - st["enqueue_ns"][sel]) / NS),
            "service_s": stats((st["end_ns"][sel] - st["start_ns"][sel]) / NS),
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
