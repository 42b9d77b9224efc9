"""Files a run writes: per-request CSV and a Chrome/Perfetto trace of client steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .latency import request_latencies
from .request import STATUS_COMPLETED, STATUS_NAMES
from .units import NS_PER_S as NS

if TYPE_CHECKING:
    from .summary import RunResults as Simulation

CSV_COLUMNS = ("request_id", "status", "client", "arrival_s", "scheduled_s", "first_token_s", "finish_s",
               "prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s", "preemptions",
               "drop_reason")


def write_requests_csv(sim: Simulation, path: str | Path) -> int:
    """One row per ended request; returns the number of rows."""
    r = sim.records.arrays()
    lat = request_latencies(r)
    done = iter(range(len(lat["idx"])))  # completed rows appear in record order
    names = [c.id for c in sim.clients]
    with Path(path).open("w") as f:
        f.write(",".join(CSV_COLUMNS) + "\n")
        for i in range(len(sim.records)):
            ok = r["status"][i] == STATUS_COMPLETED
            k = next(done) if ok else -1
            arr, sch, ft, fin = (int(r[c][i]) for c in ("arrival_ns", "scheduled_ns", "first_token_ns",
                                                        "finish_ns"))
            out = int(r["output_tokens"][i])
            client = int(r["client"][i])
            rid = sim.records.ids[i] if sim.records.ids[i] is not None else f"#{int(r['idx'][i])}"
            row = [
                rid, STATUS_NAMES[int(r["status"][i])], names[client] if client >= 0 else "",
                f"{arr / NS:.9f}", f"{sch / NS:.9f}" if sch >= 0 else "", f"{ft / NS:.9f}" if ft >= 0 else "",
                f"{fin / NS:.9f}", str(int(r["prompt_tokens"][i])), str(out),
                f"{lat['ttft'][k]:.9f}" if ok else "",
                f"{lat['tpot'][k]:.9f}" if ok and out > 1 else "",
                f"{lat['e2e'][k]:.9f}" if ok else "",
                f"{(sch - arr) / NS:.9f}" if sch >= 0 else "", str(int(r["preemptions"][i])),
                sim.records.drop_reasons.get(i, "").replace(",", ";"),
            ]
            f.write(",".join(row) + "\n")
    return len(sim.records)


def write_chrome_trace(sim: Simulation, path: str | Path) -> int:
    """Client steps as Chrome trace events (open in Perfetto or chrome://tracing)."""
    events: list[dict] = []
    for c in sim.clients:
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": c.index,
                       "args": {"name": f"{c.id} ({c.spec.hardware.name if c.spec.hardware else c.spec.role}, {c.model})"}})
    for client, start, dur, n_pre, n_dec, n_tok, k in sim.trace or []:
        if n_pre:
            name = "prefill" if not n_dec else "mixed"
        else:
            name = "decode" if k == 1 else f"decode x{k}"
        events.append({"name": name, "ph": "X", "pid": 1, "tid": client, "ts": start / 1e3,
                       "dur": dur / 1e3, "args": {"prefills": n_pre, "decodes": n_dec,
                                                  "tokens_per_step": n_tok, "steps": k}})
    Path(path).write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    return len(events)


def percentile_table(summary: dict) -> list[tuple[str, str, str, str, str]]:
    """Rows (metric, mean, p50, p90, p99) in milliseconds for a readable summary."""
    rows = []
    for name in ("ttft", "tpot", "itl", "e2e", "queue"):
        s = summary["latency_s"][name]
        rows.append((name.upper(), *(f"{s[k] * 1e3:.2f}" for k in ("mean", "p50", "p90", "p99"))))
    return rows

