"""What the exporter keeps per session and client, and how one advance's records fold into it.

The engine records nothing twice: each hook call reads only the request and stage records
past the session's cursors, so every completed request is observed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim_engine.latency import request_latencies
from sim_engine.spec import LLM_ROLES
from sim_engine.units import NS_PER_S as NS
from sim_engine.views import STAGE_GROUPS

from .families import REQUEST_HISTOGRAMS
from .hist import STAGE_BUCKETS, Hist


class ClientTable:
    """What the exporter keeps for one simulated client of one session."""

    def __init__(self, model: str, hardware: str, role: str) -> None:
        self.model, self.hardware, self.role = model, hardware, role
        self.llm = role in LLM_ROLES
        self.snap: Any = None  # the engine's latest ClientState (read at scrape time)
        self.present = True  # still in the cluster state
        self.completed = 0
        self.hists = {name: Hist(b) for name, (_, b) in REQUEST_HISTOGRAMS.items()}


class SessionTable:
    """What the exporter keeps for one session."""

    def __init__(self, stage_groups: tuple[str, ...] = ()) -> None:
        self.snap: Any = None  # the engine's latest ClusterState (read at scrape time)
        self.cursor = 0  # request records already observed
        self.stage_cursor = 0  # stage records already observed
        self.llm_client: dict[int, int] = {}  # request idx -> client index of its last LLM stage
        self.clients: dict[str, ClientTable] = {}
        self.clock_s = 0.0
        self.events_processed: float | None = None
        self.sim_per_wall = 0.0
        self.advance_wall_s = 0.0
        self.last_wall: float | None = None
        # only the stage kinds the session's pipelines have (others appear when one finishes)
        self.stages = {s: Hist(STAGE_BUCKETS) for s in STAGE_GROUPS if s in stage_groups}
        self.links: dict[str, tuple[float, float]] = {}


def stage_groups_of(sim: Any) -> tuple[str, ...]:
    """The stage kinds (metric groups) of every pipeline the session's spec defines."""
    return tuple({st.group for stages in sim.spec.pipelines.values() for st in stages})


def attr(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def number(obj: Any, name: str) -> float:
    return float(attr(obj, name, 0) or 0) if obj is not None else 0.0


def text(x: Any) -> str:
    return str(getattr(x, "value", x) if x is not None else "")


def stage_latencies(stages: dict[str, np.ndarray], start: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per stage kind, the latency (ready to done, simulated seconds) of the stages recorded in
    stages[start:]; and (idx, client) rows of the LLM stages (decode, reasoning) among them."""
    group = np.array(stages["group"][start:])
    latency = (np.array(stages["end_ns"][start:]) - np.array(stages["ready_ns"][start:])) / NS
    by_kind = {kind: latency[group == code] for code, kind in enumerate(STAGE_GROUPS) if (group == code).any()}
    llm = (group == STAGE_GROUPS.index("decode")) | (group == STAGE_GROUPS.index("reasoning"))
    pairs = np.stack([np.array(stages["idx"][start:])[llm], np.array(stages["client"][start:])[llm]])
    return by_kind, pairs


@dataclass
class Reading:
    """What one hook call read from the simulation (outside the exporter's lock)."""

    state: Any
    clock_s: float
    processed: float
    index_ids: list[str]
    ends: tuple[int, int]  # request and stage record counts
    rewound: bool = False
    requests: dict[str, np.ndarray] = field(default_factory=dict)
    stages: dict[str, np.ndarray] = field(default_factory=dict)


def read_simulation(sim: Any, s: SessionTable) -> Reading:
    """Read the clock, the state and the records `s` has not seen yet (the caller holds the
    session's lock). The engine's record buffers are exported only for the call's duration."""
    state = sim.state()
    records = sim.request_records()
    stages = sim.stage_records.arrays()
    reading = Reading(
        state=state,
        clock_s=int(sim.now_ns) / NS,
        processed=float(sim.kernel.events_processed),
        index_ids=[c.id for c in sim.clients],
        ends=(len(records["status"]), len(stages["idx"])),
    )
    if reading.ends[0] < s.cursor or reading.ends[1] < s.stage_cursor or reading.clock_s < s.clock_s:
        reading.rewound = True  # by a Restore: the caller starts the session afresh and reads again
        return reading
    if reading.ends[1] > s.stage_cursor:
        reading.stages, pairs = stage_latencies(stages, s.stage_cursor)
        s.llm_client.update(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
    if reading.ends[0] > s.cursor:
        lat = reading.requests = request_latencies(records, s.cursor)
        # a request's metrics belong to the client that generated its tokens
        pairs = zip(lat["idx"].tolist(), lat["client"].tolist(), strict=True)
        lat["client"] = np.array([s.llm_client.get(i, c) for i, c in pairs], dtype=np.int64)
        for i in lat["ended"].tolist():
            s.llm_client.pop(i, None)
    del records, stages
    return reading


def observe_client(c: ClientTable, lat: dict[str, np.ndarray], mask: np.ndarray) -> None:
    h = c.hists
    multi = mask & (lat["gaps"] > 0)
    h["vllm:time_to_first_token_seconds"].observe(lat["ttft"][mask])
    h["vllm:e2e_request_latency_seconds"].observe(lat["e2e"][mask])
    h["vllm:request_queue_time_seconds"].observe(lat["queue"][mask])
    h["vllm:request_prefill_time_seconds"].observe(lat["prefill"][mask])
    h["vllm:request_decode_time_seconds"].observe(lat["decode"][mask])
    h["vllm:request_inference_time_seconds"].observe(lat["inference"][mask])
    h["vllm:request_prompt_tokens"].observe(lat["prompt_tokens"][mask])
    h["vllm:request_generation_tokens"].observe(lat["output_tokens"][mask])
    h["vllm:request_time_per_output_token_seconds"].observe(lat["tpot"][multi])
    # a request's (output_tokens - 1) token gaps, each observed at the request's mean gap
    h["vllm:inter_token_latency_seconds"].observe(lat["tpot"][multi], lat["gaps"][multi])
    c.completed += int(mask.sum())


def apply_state(s: SessionTable, state: Any) -> None:
    """Keep the state snapshots (fresh objects from every `sim.state()` call); a scrape reads them."""
    s.snap = state
    for c in s.clients.values():
        c.present = False
    for cs in state.clients:
        c = s.clients.get(cs.id)
        if c is None:
            c = s.clients[cs.id] = ClientTable(text(cs.model), text(cs.hardware), text(cs.role))
        c.snap, c.present = cs, True
    links = attr(state, "links", None) or ()
    pairs = links.items() if isinstance(links, dict) else ((attr(x, "id", ""), x) for x in links)
    for lid, link in pairs:  # sim_engine.network link stats, when the state carries them
        util = float(attr(link, "utilization", 0.0) or 0.0)
        moved = float(attr(link, "bytes_moved", attr(link, "bytes_total", 0.0)) or 0.0)
        s.links[text(lid)] = (util, moved)


def apply_completions(s: SessionTable, r: Reading) -> None:
    for kind, values in r.stages.items():
        if kind not in s.stages:
            s.stages[kind] = Hist(STAGE_BUCKETS)
        s.stages[kind].observe(values)
    lat = r.requests
    for idx in np.unique(lat["client"]).tolist() if lat else ():
        cid = r.index_ids[idx] if 0 <= idx < len(r.index_ids) else f"client-{idx}"
        c = s.clients.get(cid)
        if c is None:
            c = s.clients[cid] = ClientTable("", "", "")
        observe_client(c, lat, lat["client"] == idx)
