"""Per-instance `/metrics`: the vLLM series of one simulated client, plus the fleet's own gauges.

A scrape runs on the front's event loop, so it must be cheap: completions are folded in
incrementally (server.metrics.exporter's `read_simulation` and histogram folding, so the
definitions are the exporter's) and only the scraped client's series are formatted, by hand,
in Prometheus text format 0.0.4. Names, help texts and buckets come from the exporter (that
is, from vLLM). Labels are vLLM's (`model_name`, `engine`). Added here:
``vllm:cache_config_info`` (block size and number of blocks, which the Gateway API endpoint
picker reads), ``hermes_fleet_lag_seconds``, ``hermes_fleet_time_scale`` and
``hermes_simulated_time_seconds``. The gateway's scrape (`render_gateway`) has the exporter's
``hermes_stage_latency_seconds{stage}`` and request counts, which show that a pipeline's stages ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim_engine import Simulation

from ..metrics.families import FAMILIES, REQUEST_HISTOGRAMS, VLLM_STATE_FIELDS
from ..metrics.hist import STAGE_BUCKETS, Hist
from ..metrics.tables import SessionTable, observe_client, read_simulation
from .pacer import Pacer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINISHED_REASONS = ("stop", "length", "abort")  # vLLM's finished_reason label values


@dataclass
class _Instance:
    """One listener's client: what `observe_client` folds into (the exporter's ClientTable fields)."""

    labels: str
    hists: dict = field(default_factory=lambda: {n: Hist(b) for n, (_, b) in REQUEST_HISTOGRAMS.items()})
    completed: int = 0
    stopped: int = 0  # completions that ended before max_tokens (lengths drawn from the spec)
    aborted: int = 0  # requests aborted because their caller disconnected


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v))


class FleetMetrics:
    """Folds the simulation's completions per client; `render(client_id)` answers one listener's scrape."""

    def __init__(self, sim: Simulation, pacer: Pacer):
        self.sim, self.pacer = sim, pacer
        self._cur = SessionTable()  # only its cursors are used
        self._index = [c.id for c in sim.clients]
        self._inst: dict[str, _Instance] = {}
        for c in sim.clients:
            if c.spec.is_llm:
                self._inst[c.id] = _Instance(f'model_name="{_escape(c.model)}",engine="0"')
        self._state = None
        self.stages: dict[str, Hist] = {}  # stage group -> latencies of the stages that ended

    def refresh(self) -> None:
        r = read_simulation(self.sim, self._cur)
        self._cur.cursor, self._cur.stage_cursor = r.ends
        self._cur.clock_s = r.clock_s
        self._state = {c.id: c for c in r.state.clients}
        for kind, values in r.stages.items():
            self.stages.setdefault(kind, Hist(STAGE_BUCKETS)).observe(values)
        lat = r.requests
        if lat:
            for idx in np.unique(lat["client"]).tolist():
                inst = self._inst.get(self._index[idx]) if 0 <= idx < len(self._index) else None
                if inst is not None:
                    observe_client(inst, lat, lat["client"] == idx)

    def note_stopped(self, client_id: str, n: int) -> None:
        """The front drew these completions' lengths (finish_reason stop, not length)."""
        inst = self._inst.get(client_id)
        if inst is not None:
            inst.stopped += n

    def note_aborted(self, client_id: str) -> None:
        """A request of this client was aborted (its caller disconnected)."""
        inst = self._inst.get(client_id)
        if inst is not None:
            inst.aborted += 1

    def render(self, client_id: str) -> bytes:
        self.refresh()
        inst = self._inst[client_id]
        st = self._state.get(client_id)
        lab = inst.labels
        out: list[str] = []

        def family(name: str, kind: str | None = None, doc: str | None = None) -> None:
            if kind is None:
                kind, doc, _ = FAMILIES[name]
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")

        for name, f in {**VLLM_STATE_FIELDS, "vllm:kv_cache_usage_perc": "kv_usage"}.items():
            kind = FAMILIES[name][0]
            family(name)
            value = getattr(st, f) if st is not None else 0.0
            out.append(f"{name}{'_total' if kind == 'counter' else ''}{{{lab}}} {_num(value)}\n")
        family("vllm:request_success")
        stopped = min(inst.stopped, inst.completed)
        for reason in FINISHED_REASONS:
            n = stopped if reason == "stop" else inst.completed - stopped if reason == "length" else inst.aborted
            out.append(f'vllm:request_success_total{{{lab},finished_reason="{reason}"}} {_num(n)}\n')
        for name, h in inst.hists.items():
            family(name)
            for le, count in h.exposition():
                out.append(f'{name}_bucket{{{lab},le="{le}"}} {_num(count)}\n')
            out.append(f"{name}_count{{{lab}}} {_num(h.count)}\n{name}_sum{{{lab}}} {_num(h.total)}\n")
        spec = self.sim.client_by_id[client_id].spec
        blocks = st.kv_total_blocks if st is not None else 0
        family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
        out.append(f'vllm:cache_config_info{{block_size="{spec.scheduler.block_size}",'
                   f'gpu_memory_utilization="{spec.scheduler.gpu_memory_utilization}",num_gpu_blocks="{blocks}",'
                   f'num_cpu_blocks="0",enable_prefix_caching="{spec.scheduler.prefix_caching}",{lab}}} 1.0\n')
        out.extend(self._fleet_gauges())
        return "".join(out).encode()

    def render_gateway(self) -> bytes:
        """The gateway's scrape: per-stage latencies and request counts of the whole simulation."""
        self.refresh()
        out: list[str] = []
        name = "hermes_stage_latency_seconds"
        out.append(f"# HELP {name} {FAMILIES[name][1]}\n# TYPE {name} histogram\n")
        for stage, h in sorted(self.stages.items()):
            for le, count in h.exposition():
                out.append(f'{name}_bucket{{stage="{stage}",le="{le}"}} {_num(count)}\n')
            out.append(f'{name}_count{{stage="{stage}"}} {_num(h.count)}\n'
                       f'{name}_sum{{stage="{stage}"}} {_num(h.total)}\n')
        for name, value in (("hermes_requests_completed", self.sim.completed),
                            ("hermes_requests_dropped", self.sim.dropped),
                            ("hermes_requests_aborted", self.sim.aborted)):
            out.append(f"# HELP {name} {FAMILIES[name][1]}\n# TYPE {name} counter\n{name}_total {_num(value)}\n")
        out.extend(self._fleet_gauges())
        return "".join(out).encode()

    def _fleet_gauges(self) -> list[str]:
        out: list[str] = []

        def family(name: str, kind: str, doc: str) -> None:
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")

        family("hermes_fleet_lag_seconds", "gauge",
               "Worst delay (wall seconds) of the simulation behind its scaled clock over the last 1-2 s.")
        out.append(f"hermes_fleet_lag_seconds {_num(self.pacer.lag_gauge())}\n")
        family("hermes_fleet_time_scale", "gauge", "Simulated seconds per wall-clock second.")
        out.append(f"hermes_fleet_time_scale {_num(self.pacer.scale)}\n")
        family("hermes_simulated_time_seconds", "gauge", "The fleet's simulated clock (simulated seconds).")
        out.append(f"hermes_simulated_time_seconds {_num(self.sim.now_ns / 1e9)}\n")
        return out
