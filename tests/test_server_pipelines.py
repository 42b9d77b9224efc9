"""Multi-stage pipelines under the server: an external router sees and places every stage kind."""

from __future__ import annotations

from pathlib import Path

import yaml

from client_sdk import ExternalScheduler

SPEC = Path(__file__).resolve().parent.parent / "examples" / "specs" / "multistage-hetero.yaml"


class RecordingScheduler(ExternalScheduler):
    """Routes every stage to its first candidate and remembers which stage kinds it was asked about."""

    needs_state = False

    def __init__(self) -> None:
        self.kinds: set[str] = set()

    def route(self, decision, state):
        self.kinds.add(decision.stage_kind)
        return decision.candidates[0]


def test_every_stage_kind_is_routed_by_the_external_scheduler(client):
    doc = yaml.safe_load(SPEC.read_text())
    doc["router"] = {"policy": "external"}
    doc["workload"]["num_requests"] = 12
    doc["kv_cache"] = {"mode": "lru", "tiers": [
        {"id": "dram", "capacity_gb": 100, "bandwidth_gbs": 64, "latency_us": 50, "scope": "client"}]}
    doc["workload"]["prefix"] = {"tokens": 256, "groups": 2}
    # a kv_retrieval stage in front of the prefill
    stages = doc["pipelines"]["rag_chat"]
    stages.insert(next(i for i, s in enumerate(stages) if s["kind"] == "prefill"), {"kind": "kv_retrieval"})
    scheduler = RecordingScheduler()
    with client.create_session(doc, seed=3) as session:
        summary = scheduler.run(session)
    assert scheduler.kinds == {"embed", "search", "rerank", "route", "kv_retrieval", "decode", "generic"}
    assert summary["requests"]["completed"] == 12
    assert set(summary["stages"]) == {"rag", "route", "kv_retrieval", "prefill", "reasoning", "generic"}
    # each rag request ran embed, search and rerank once; every other group once
    assert summary["stages"]["rag"]["count"] == 36
    assert all(summary["stages"][g]["count"] == 12 for g in ("route", "kv_retrieval", "prefill", "reasoning"))
