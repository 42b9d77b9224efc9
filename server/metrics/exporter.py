"""Prometheus exporter for `hermes serve --metrics-port`.

`MetricsExporter` is the session manager's observer (docs/SERVER_HOOKS.md) and a
Collector on its own CollectorRegistry. After every advance it reads the session's
new request records and its cluster state (the engine records nothing twice) and
folds them into the exporter's own tables, under the exporter's lock, never a
session's: a scrape during a long Advance answers at once. The `vllm:*` families
copy the names, types and buckets of vLLM's v1 Prometheus logger. Every family is
listed in docs/METRICS.md.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sim_engine.latency import request_latencies
from sim_engine.spec import LLM_ROLES
from sim_engine.units import NS_PER_S as NS
from sim_engine.views import STAGE_GROUPS

# fmt: off
# vLLM's buckets (vllm/v1/metrics/loggers.py)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TOKEN_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                           50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# vLLM builds 1-2-5 token buckets up to max_model_len; HERMES fixes the bound at 1M tokens
TOKEN_COUNT_BUCKETS = tuple(float(m * 10**e) for e in range(7) for m in (1, 2, 5) if m * 10**e <= 10**6)
# HERMES' own
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 7680.0)
RPC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
               1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# fmt: on

FINISHED_REASONS = ("stop", "length", "abort")
VLLM_LABELS = ["model_name", "engine", "client", "session"]
_S, _C = ["session"], ["session", "client"]

# per-request histograms: name -> (help, buckets)
REQUEST_HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.", TTFT_BUCKETS),
    "vllm:inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.", TOKEN_GAP_BUCKETS),
    "vllm:time_per_output_token_seconds": (
        "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds.",
        TOKEN_GAP_BUCKETS,
    ),
    "vllm:request_time_per_output_token_seconds": (
        "Histogram of time_per_output_token_seconds per request.",
        TOKEN_GAP_BUCKETS,
    ),
    "vllm:e2e_request_latency_seconds": (
        "Histogram of e2e request latency in seconds.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_queue_time_seconds": (
        "Histogram of time spent in WAITING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_inference_time_seconds": (
        "Histogram of time spent in RUNNING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_prefill_time_seconds": (
        "Histogram of time spent in PREFILL phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_decode_time_seconds": (
        "Histogram of time spent in DECODE phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_prompt_tokens": ("Number of prefill tokens processed.", TOKEN_COUNT_BUCKETS),
    "vllm:request_generation_tokens": ("Number of generation tokens processed.", TOKEN_COUNT_BUCKETS),
}

# family name -> (type, help, label names); counters are exposed with a `_total` suffix
FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    "vllm:num_requests_running": ("gauge", "Number of requests in model execution batches.", VLLM_LABELS),
    "vllm:num_requests_waiting": ("gauge", "Number of requests waiting to be processed.", VLLM_LABELS),
    "vllm:kv_cache_usage_perc": ("gauge", "KV-cache usage. 1 means 100 percent usage.", VLLM_LABELS),
    "vllm:gpu_cache_usage_perc": (
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc.",
        VLLM_LABELS,
    ),
    "vllm:num_preemptions": ("counter", "Cumulative number of preemption from the engine.", VLLM_LABELS),
    "vllm:prompt_tokens": ("counter", "Number of prefill tokens processed.", VLLM_LABELS),
    "vllm:generation_tokens": ("counter", "Number of generation tokens processed.", VLLM_LABELS),
    "vllm:request_success": (
        "counter",
        "Count of successfully processed requests.",
        VLLM_LABELS + ["finished_reason"],
    ),
    **{name: ("histogram", doc, VLLM_LABELS) for name, (doc, _) in REQUEST_HISTOGRAMS.items()},
    "hermes_simulated_time_seconds": ("gauge", "The session's simulated clock (simulated seconds).", _S),
    "hermes_sim_seconds_per_wall_second": (
        "gauge",
        "Simulated seconds per wall-clock second over the session's last Advance.",
        _S,
    ),
    "hermes_advance_wall_seconds": ("counter", "Wall-clock seconds the session spent in Advance.", _S),
    "hermes_events_processed": ("counter", "Simulator (kernel) events processed by the session.", _S),
    "hermes_requests_injected": ("counter", "Requests that entered the session (workload or Inject).", _S),
    "hermes_requests_completed": ("counter", "Requests the session completed.", _S),
    "hermes_requests_dropped": ("counter", "Requests the session dropped.", _S),
    "hermes_requests_in_flight": ("gauge", "Requests in the session that have not ended.", _S),
    "hermes_pending_decisions": ("gauge", "Routing decisions waiting for the co-simulation client.", _S),
    "hermes_stage_latency_seconds": (
        "histogram",
        "Per-stage latency of completed requests (simulated seconds).",
        _S + ["stage"],
    ),
    "hermes_client_info": (
        "gauge",
        "Simulated client metadata (value 1).",
        _C + ["model_name", "hardware", "role"],
    ),
    "hermes_client_up": ("gauge", "1 while the simulated client serves, 0 once failed or removed.", _C),
    "hermes_client_kv_used_blocks": ("gauge", "KV-cache blocks in use on the client.", _C),
    "hermes_client_kv_total_blocks": ("gauge", "KV-cache blocks the client has.", _C),
    "hermes_client_busy_seconds": ("counter", "Simulated seconds the client was busy.", _C),
    "hermes_client_energy_joules": ("counter", "Energy the client used while busy (simulated joules).", _C),
    "hermes_client_requests_completed": ("counter", "Requests completed on the client.", _C),
    "hermes_link_utilization_ratio": (
        "gauge",
        "Fraction of the link's bandwidth in use (0-1).",
        _S + ["link"],
    ),
    "hermes_link_bytes": ("counter", "Bytes moved over the link (simulated).", _S + ["link"]),
    "hermes_sessions_open": ("gauge", "Sessions open on this server.", []),
    "hermes_rpc_duration_seconds": ("histogram", "Wall-clock latency of gRPC calls.", ["method", "code"]),
}
# family name -> field of the engine's ClientState
VLLM_STATE_FIELDS = {
    "vllm:num_requests_running": "num_running",
    "vllm:num_requests_waiting": "num_waiting",
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:gpu_cache_usage_perc": "kv_usage",
    "vllm:num_preemptions": "preemptions_total",
    "vllm:prompt_tokens": "prompt_tokens_total",
    "vllm:generation_tokens": "generation_tokens_total",
}
HERMES_STATE_FIELDS = {
    "hermes_client_kv_used_blocks": "kv_used_blocks",
    "hermes_client_kv_total_blocks": "kv_total_blocks",
    "hermes_client_busy_seconds": "busy_s",
    "hermes_client_energy_joules": "energy_j",
    "hermes_client_requests_completed": "requests_completed_total",
}
GONE_ZERO_FIELDS = frozenset({"num_running", "num_waiting", "kv_usage", "kv_used_blocks"})
SESSION_STATE_FIELDS = {
    "hermes_requests_injected": "injected",
    "hermes_requests_completed": "completed",
    "hermes_requests_dropped": "dropped",
    "hermes_requests_in_flight": "in_flight",
    "hermes_pending_decisions": "pending_decisions",
}


class Hist:
    """A classic histogram with bulk, weighted observations (per-bucket counts, +Inf last)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add values (`le` semantics: a value equal to a bound falls in that bucket)."""
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return
        idx = np.searchsorted(self.bounds, values, side="left")
        if weights is None:
            self.counts += np.bincount(idx, minlength=self.counts.size)
            self.total += float(values.sum())
        else:
            w = np.asarray(weights, dtype=np.int64)
            self.counts += np.bincount(idx, weights=w, minlength=self.counts.size).astype(np.int64)
            self.total += float(np.dot(values, w))

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def exposition(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs ending with +Inf."""
        cum = np.cumsum(self.counts).tolist()
        return [(repr(float(b)), c) for b, c in zip(self.bounds.tolist(), cum[:-1], strict=True)] + [
            ("+Inf", cum[-1])
        ]


class _Client:
    """What the exporter keeps for one simulated client of one session."""

    def __init__(self, model: str, hardware: str, role: str) -> None:
        self.model, self.hardware, self.role = model, hardware, role
        self.llm = role in LLM_ROLES
        self.snap: Any = None  # the engine's latest ClientState (read at scrape time)
        self.present = True  # still in the cluster state
        self.completed = 0
        self.hists = {name: Hist(b) for name, (_, b) in REQUEST_HISTOGRAMS.items()}


class _Session:
    """What the exporter keeps for one session."""

    def __init__(self) -> None:
        self.snap: Any = None  # the engine's latest ClusterState (read at scrape time)
        self.cursor = 0  # request records already observed
        self.stage_cursor = 0  # stage records already observed
        self.llm_client: dict[int, int] = {}  # request idx -> client index of its last LLM stage
        self.clients: dict[str, _Client] = {}
        self.clock_s = 0.0
        self.events_processed: float | None = None
        self.sim_per_wall = 0.0
        self.advance_wall_s = 0.0
        self.last_wall: float | None = None
        self.stages = {s: Hist(STAGE_BUCKETS) for s in STAGE_GROUPS}
        self.links: dict[str, tuple[float, float]] = {}


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _number(obj: Any, name: str) -> float:
    return float(_attr(obj, name, 0) or 0) if obj is not None else 0.0


def _text(x: Any) -> str:
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
class _Reading:
    """What one hook call read from the simulation (outside the exporter's lock)."""

    state: Any
    clock_s: float
    processed: float
    index_ids: list[str]
    ends: tuple[int, int]  # request and stage record counts
    rewound: bool = False
    requests: dict[str, np.ndarray] = field(default_factory=dict)
    stages: dict[str, np.ndarray] = field(default_factory=dict)


def read_simulation(sim: Any, s: _Session) -> _Reading:
    """Read the clock, the state and the records `s` has not seen yet (the caller holds the
    session's lock). The engine's record buffers are exported only for the call's duration."""
    state = sim.state()
    records = sim.request_records()
    stages = sim.stage_records.arrays()
    reading = _Reading(
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


def _observe_client(c: _Client, lat: dict[str, np.ndarray], mask: np.ndarray) -> None:
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
    for name in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
        h[name].observe(lat["tpot"][multi], lat["gaps"][multi])
    c.completed += int(mask.sum())


class MetricsExporter(Collector):
    """The session manager's observer and the server's Prometheus collector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._rpc: dict[tuple[str, str], Hist] = {}
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.host, self.port = "", 0
        self.registry.register(self)

    # ---- observer hooks (docs/SERVER_HOOKS.md) ---------------------------------------------
    def on_session_created(self, session_id: str, sim: Any) -> None:
        """A new (or forked) session: its series appear at once, with any inherited history."""
        with self._lock:
            self._sessions[session_id] = _Session()
        self.on_session_advanced(session_id, sim)

    def on_session_advanced(
        self, session_id: str, sim: Any, events: Any = (), wall_seconds: float | None = None
    ) -> None:
        """Fold in what an advance changed: new request records, clock and cluster state.

        `events` is not needed (the request records carry every completion, whatever
        event kinds the session delivers); `wall_seconds` is the advance's wall time.
        """
        now_wall = time.monotonic()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                s = self._sessions[session_id] = _Session()
        # the session's lock (held by our caller) makes `s`'s cursors ours while we read
        r = read_simulation(sim, s)
        if r.rewound:  # by a Restore: the session's series start afresh
            s = _Session()
            with self._lock:
                self._sessions[session_id] = s
            r = read_simulation(sim, s)
        with self._lock:
            if self._sessions.get(session_id) is not s:
                return
            s.cursor, s.stage_cursor = r.ends
            self._apply_state(s, r.state)
            self._apply_completions(s, r)
            wall = (
                wall_seconds
                if wall_seconds is not None
                else (now_wall - s.last_wall if s.last_wall is not None else None)
            )
            if wall:
                s.sim_per_wall = (r.clock_s - s.clock_s) / wall
            s.advance_wall_s += wall_seconds or 0.0
            s.clock_s, s.last_wall = r.clock_s, now_wall
            if r.processed is not None:
                s.events_processed = r.processed

    def on_session_closed(self, session_id: str) -> None:
        """Drop every series of the session."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def on_rpc(self, method: str, code: Any, seconds: float) -> None:
        code_name = _text(getattr(code, "name", code))
        with self._lock:
            h = self._rpc.get((method, code_name))
            if h is None:
                h = self._rpc[(method, code_name)] = Hist(RPC_BUCKETS)
            h.observe(np.array([seconds]))

    # ---- folding (exporter lock held) --------------------------------------------------------
    @staticmethod
    def _apply_state(s: _Session, state: Any) -> None:
        """Keep the state snapshots (fresh objects from every `sim.state()` call); a scrape reads them."""
        s.snap = state
        for c in s.clients.values():
            c.present = False
        for cs in state.clients:
            c = s.clients.get(cs.id)
            if c is None:
                c = s.clients[cs.id] = _Client(_text(cs.model), _text(cs.hardware), _text(cs.role))
            c.snap, c.present = cs, True
        links = _attr(state, "links", None) or ()
        pairs = links.items() if isinstance(links, dict) else ((_attr(x, "id", ""), x) for x in links)
        for lid, link in pairs:  # sim_engine.network link stats, when the state carries them
            util = float(_attr(link, "utilization", 0.0) or 0.0)
            moved = float(_attr(link, "bytes_moved", _attr(link, "bytes_total", 0.0)) or 0.0)
            s.links[_text(lid)] = (util, moved)

    @staticmethod
    def _apply_completions(s: _Session, r: _Reading) -> None:
        for kind, values in r.stages.items():
            s.stages[kind].observe(values)
        lat = r.requests
        for idx in np.unique(lat["client"]).tolist() if lat else ():
            cid = r.index_ids[idx] if 0 <= idx < len(r.index_ids) else f"client-{idx}"
            c = s.clients.get(cid)
            if c is None:
                c = s.clients[cid] = _Client("", "", "")
            _observe_client(c, lat, lat["client"] == idx)

    # ---- scrape ------------------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = self._families()
        yield from families

    def _families(self) -> list[Metric]:
        kinds = {
            "gauge": GaugeMetricFamily,
            "counter": CounterMetricFamily,
            "histogram": HistogramMetricFamily,
        }
        fams = {name: kinds[kind](name, doc, labels=labels) for name, (kind, doc, labels) in FAMILIES.items()}

        def add(name: str, labels: list[str], value: float | Hist) -> None:
            if isinstance(value, Hist):
                fams[name].add_metric(labels, value.exposition(), value.total)
            else:
                fams[name].add_metric(labels, value)

        add("hermes_sessions_open", [], len(self._sessions))
        for (method, code), h in sorted(self._rpc.items()):
            add("hermes_rpc_duration_seconds", [method, code], h)
        for sid, s in self._sessions.items():
            add("hermes_simulated_time_seconds", [sid], s.clock_s)
            add("hermes_sim_seconds_per_wall_second", [sid], s.sim_per_wall)
            add("hermes_advance_wall_seconds", [sid], s.advance_wall_s)
            if s.events_processed is not None:
                add("hermes_events_processed", [sid], s.events_processed)
            for name, f in SESSION_STATE_FIELDS.items():
                add(name, [sid], _number(s.snap, f))
            for stage, h in s.stages.items():
                add("hermes_stage_latency_seconds", [sid, stage], h)
            for lid, (util, moved) in s.links.items():
                add("hermes_link_utilization_ratio", [sid, lid], util)
                add("hermes_link_bytes", [sid, lid], moved)
            for cid, c in s.clients.items():
                self._client_samples(add, sid, cid, c)
        return list(fams.values())

    @staticmethod
    def _client_samples(add: Callable[..., None], sid: str, cid: str, c: _Client) -> None:
        def field_value(f: str) -> float:
            # a client gone from the cluster runs nothing; its counters keep their last values
            return 0.0 if not c.present and f in GONE_ZERO_FIELDS else _number(c.snap, f)

        up = c.present and _text(_attr(c.snap, "status", "")).lower() not in ("failed", "removed")
        add("hermes_client_info", [sid, cid, c.model, c.hardware, c.role], 1.0)
        add("hermes_client_up", [sid, cid], 1.0 if up else 0.0)
        for name, f in HERMES_STATE_FIELDS.items():
            add(name, [sid, cid], field_value(f))
        if not c.llm:
            return
        labels = [c.model, cid, cid, sid]
        for name, f in VLLM_STATE_FIELDS.items():
            add(name, labels, field_value(f))
        for reason in FINISHED_REASONS:
            add("vllm:request_success", labels + [reason], c.completed if reason == "stop" else 0)
        for name, h in c.hists.items():
            add(name, labels, h)

    # ---- HTTP --------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsExporter:
        """Serve /metrics on host:port in a daemon thread (port 0 picks one; see `.port`)."""
        self._http = make_server(
            host, port, classic_text_app(self.registry), _MetricsHTTPServer, _QuietHandler
        )
        self._thread = threading.Thread(target=self._http.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        self.host, self.port = host, int(self._http.server_port)
        return self

    def stop(self) -> None:
        """Stop the HTTP server (idempotent)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _MetricsHTTPServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


def classic_text_app(registry: CollectorRegistry) -> Callable[..., Any]:
    """prometheus-client's WSGI app, always answering in the classic text format 0.0.4.

    prometheus-client 0.26 writes `vllm:x` as `vllm_x` in OpenMetrics sample lines (but
    not in HELP/TYPE; prometheus/client_python#1177), and Prometheus asks for OpenMetrics
    first, so the exporter never offers it.
    """
    app = make_wsgi_app(registry)

    def text_only(environ: dict, start_response: Callable[..., Any]) -> Any:
        environ["HTTP_ACCEPT"] = "text/plain; version=0.0.4"
        return app(environ, start_response)

    return text_only


def start_metrics_server(port: int, host: str = "0.0.0.0") -> MetricsExporter:
    """A new exporter on a fresh registry, serving http://host:port/metrics."""
    return MetricsExporter().serve(port, host)
