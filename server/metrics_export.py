"""Prometheus exporter for `hermes serve --metrics-port`.

`MetricsExporter` is the session manager's observer (docs/SERVER_HOOKS.md) and a
prometheus-client Collector on its own CollectorRegistry. Hooks copy what a scrape
needs into the exporter's own tables (under the exporter's lock, never a session's),
so a scrape during a long Advance answers at once. Names, types and buckets of the
`vllm:*` families follow vLLM's v1 Prometheus logger; docs/METRICS.md lists them all.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# fmt: off
# --- vLLM bucket sets (vllm/v1/metrics/loggers.py) -----------------------------------------
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TOKEN_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                           50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# vLLM uses 1-2-5 buckets up to max_model_len; the exporter fixes the bound at 1M tokens.
TOKEN_COUNT_BUCKETS = tuple(float(m * 10**e) for e in range(7) for m in (1, 2, 5) if m * 10**e <= 1_000_000)
# --- HERMES bucket sets ---------------------------------------------------------------------
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 7680.0)
RPC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
               1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# fmt: on

STAGES = ("rag", "kv_retrieval", "route", "prefill", "decode", "reasoning", "generic")
FINISHED_REASONS = ("stop", "length", "abort")
NON_LLM_ROLES = frozenset({"embedding", "retrieval", "kv_store", "kvstore", "rerank", "generic"})
CLIENT_LABELS = ["model_name", "engine", "client", "session"]

# (metric name, help, buckets, completed-event field) of the per-request vLLM histograms
_REQUEST_HISTS = (
    (
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        TTFT_BUCKETS,
        "ttft_s",
    ),
    (
        "vllm:request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        TOKEN_GAP_BUCKETS,
        "tpot_s",
    ),
    (
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        REQUEST_LATENCY_BUCKETS,
        "e2e_s",
    ),
    (
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        REQUEST_LATENCY_BUCKETS,
        "queue_s",
    ),
    (
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        REQUEST_LATENCY_BUCKETS,
        "inference_s",
    ),
    (
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        REQUEST_LATENCY_BUCKETS,
        "prefill_s",
    ),
    (
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        REQUEST_LATENCY_BUCKETS,
        "decode_s",
    ),
    (
        "vllm:request_prompt_tokens",
        "Number of prefill tokens processed.",
        TOKEN_COUNT_BUCKETS,
        "prompt_tokens",
    ),
    (
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        TOKEN_COUNT_BUCKETS,
        "output_tokens",
    ),
)
# per-token histograms: each request adds (output_tokens - 1) gaps of its mean gap
_TOKEN_HISTS = (
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds."),
    (
        "vllm:time_per_output_token_seconds",
        "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds instead.",
    ),
)
_HIST_BUCKETS = {name: b for name, _, b, _ in _REQUEST_HISTS} | {
    name: TOKEN_GAP_BUCKETS for name, _ in _TOKEN_HISTS
}

_SL, _CL = ["session"], ["session", "client"]
# family name -> (type, help, label names); counters are exposed with a `_total` suffix
FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    "vllm:num_requests_running": ("gauge", "Number of requests in model execution batches.", CLIENT_LABELS),
    "vllm:num_requests_waiting": ("gauge", "Number of requests waiting to be processed.", CLIENT_LABELS),
    "vllm:kv_cache_usage_perc": ("gauge", "KV-cache usage. 1 means 100 percent usage.", CLIENT_LABELS),
    "vllm:gpu_cache_usage_perc": (
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
        CLIENT_LABELS,
    ),
    "vllm:num_preemptions": ("counter", "Cumulative number of preemption from the engine.", CLIENT_LABELS),
    "vllm:prompt_tokens": ("counter", "Number of prefill tokens processed.", CLIENT_LABELS),
    "vllm:generation_tokens": ("counter", "Number of generation tokens processed.", CLIENT_LABELS),
    "vllm:request_success": (
        "counter",
        "Count of successfully processed requests.",
        CLIENT_LABELS + ["finished_reason"],
    ),
    **{name: ("histogram", doc, CLIENT_LABELS) for name, doc, _, _ in _REQUEST_HISTS},
    **{name: ("histogram", doc, CLIENT_LABELS) for name, doc in _TOKEN_HISTS},
    "hermes_simulated_time_seconds": ("gauge", "Simulated clock of the session (simulated seconds).", _SL),
    "hermes_sim_seconds_per_wall_second": (
        "gauge",
        "Simulated seconds advanced per wall-clock second over the session's last advance.",
        _SL,
    ),
    "hermes_advance_wall_seconds": ("counter", "Wall-clock seconds spent in the session's advances.", _SL),
    "hermes_events": (
        "counter",
        "Simulation events delivered to the session's client, by kind.",
        _SL + ["kind"],
    ),
    "hermes_kernel_events": ("counter", "Kernel events processed by the session's simulator.", _SL),
    "hermes_requests_dropped": ("counter", "Requests dropped, by reason.", _SL + ["reason"]),
    "hermes_stage_latency_seconds": (
        "histogram",
        "Per-stage latency of completed requests (simulated seconds).",
        _SL + ["stage"],
    ),
    "hermes_client_up": (
        "gauge",
        "1 while the simulated client serves, 0 once failed or removed.",
        _CL + ["model_name"],
    ),
    "hermes_client_kv_used_blocks": ("gauge", "KV-cache blocks in use on the client.", _CL),
    "hermes_client_kv_total_blocks": ("gauge", "KV-cache blocks the client has.", _CL),
    "hermes_client_busy_seconds": ("counter", "Simulated seconds the client was busy.", _CL),
    "hermes_client_energy_joules": ("counter", "Energy used by the client (simulated joules).", _CL),
    "hermes_client_requests_completed": ("counter", "Requests completed on the client.", _CL),
    "hermes_link_utilization_ratio": (
        "gauge",
        "Fraction of the link's bandwidth in use (0-1).",
        _SL + ["link"],
    ),
    "hermes_link_bytes": ("counter", "Bytes moved over the link (simulated).", _SL + ["link"]),
    "hermes_sessions_open": ("gauge", "Sessions open on this server.", []),
    "hermes_rpc_duration_seconds": ("histogram", "Wall-clock latency of gRPC calls.", ["method", "code"]),
}
# family name -> key in _Client.gauges / _Client.counters
_VLLM_GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv",
}
_VLLM_COUNTERS = {
    "vllm:num_preemptions": "preemptions_total",
    "vllm:prompt_tokens": "prompt_tokens_total",
    "vllm:generation_tokens": "generation_tokens_total",
}
_HERMES_CLIENT_GAUGES = {
    "hermes_client_kv_used_blocks": "kv_used_blocks",
    "hermes_client_kv_total_blocks": "kv_total_blocks",
}
_HERMES_CLIENT_COUNTERS = {
    "hermes_client_busy_seconds": "busy_s",
    "hermes_client_energy_joules": "energy_j",
    "hermes_client_requests_completed": "requests_completed_total",
}


class Hist:
    """A classic histogram with weighted observations (counts per bucket, +Inf last)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight

    def merge(self, other: Hist) -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.total += other.total

    def count(self) -> int:
        return sum(self.counts)

    def exposition(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs ending with +Inf."""
        out, acc = [], 0
        for bound, c in zip(self.bounds, self.counts[:-1], strict=True):
            acc += c
            out.append((_fmt(bound), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out


def _fmt(x: float) -> str:
    return repr(float(x))


class _Client:
    """What the exporter keeps for one simulated client of one session."""

    def __init__(self, model: str, llm: bool) -> None:
        self.model = model
        self.llm = llm
        self.present = True
        self.gauges: dict[str, float] = {}
        self.counters: dict[str, float] = {}
        self.success: dict[str, int] = dict.fromkeys(FINISHED_REASONS, 0)
        self.hists: dict[str, Hist] = {name: Hist(b) for name, b in _HIST_BUCKETS.items()}


class _Session:
    """What the exporter keeps for one session."""

    def __init__(self) -> None:
        self.clients: dict[str, _Client] = {}
        self.clock_s = 0.0
        self.events: dict[str, int] = {}
        self.kernel_events: float | None = None
        self.dropped: dict[str, int] = {}
        self.stages: dict[str, Hist] = {s: Hist(STAGE_BUCKETS) for s in STAGES}
        self.links: dict[str, dict[str, float]] = {}
        self.sim_per_wall = 0.0
        self.advance_wall_s = 0.0
        self.last_wall: float | None = None


class _Delta:
    """Observations from one advance, built outside the lock and merged under it."""

    def __init__(self) -> None:
        self.hists: dict[tuple[str, str], Hist] = {}
        self.success: dict[tuple[str, str], int] = {}
        self.events: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.stages: dict[str, Hist] = {}
        self.models: dict[str, str] = {}

    def hist(self, client: str, name: str) -> Hist:
        h = self.hists.get((client, name))
        if h is None:
            h = self.hists[(client, name)] = Hist(_HIST_BUCKETS[name])
        return h

    def stage(self, kind: str) -> Hist:
        h = self.stages.get(kind)
        if h is None:
            h = self.stages[kind] = Hist(STAGE_BUCKETS)
        return h


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # drop NaN


def _kind(event: Any) -> str:
    kind = _get(event, "kind", "")
    return str(getattr(kind, "value", kind))


def events_delta(events: Iterable[Any]) -> _Delta:
    """Turn one advance's events into histogram observations and counts."""
    d = _Delta()
    for ev in events:
        kind = _kind(ev)
        d.events[kind] = d.events.get(kind, 0) + 1
        data = _get(ev, "data") or {}
        if kind == "dropped":
            reason = str(_get(data, "reason", "unknown"))
            d.dropped[reason] = d.dropped.get(reason, 0) + 1
            continue
        if kind != "completed":
            continue
        client = str(_get(ev, "client_id") or _get(data, "client_id") or "unknown")
        if _get(data, "model") is not None:
            d.models.setdefault(client, str(_get(data, "model")))
        key = (client, str(_get(data, "finished_reason", "stop")))
        d.success[key] = d.success.get(key, 0) + 1
        values = {f: _num(_get(data, f)) for _, _, _, f in _REQUEST_HISTS if f != "inference_s"}
        if values["prefill_s"] is not None and values["decode_s"] is not None:
            values["inference_s"] = values["prefill_s"] + values["decode_s"]
        for name, _, _, field in _REQUEST_HISTS:
            if values.get(field) is not None:
                d.hist(client, name).observe(values[field])
        gaps = int(values["output_tokens"] or 0) - 1
        if gaps > 0 and values["tpot_s"] is not None:
            for name, _ in _TOKEN_HISTS:
                d.hist(client, name).observe(values["tpot_s"], gaps)
        for kind_s, seconds in _stage_times(data, values):
            d.stage(kind_s).observe(seconds)
    return d


def _stage_times(data: Any, values: Mapping[str, float | None]) -> Iterator[tuple[str, float]]:
    """Per-stage latencies of a completed request: data["stages"] if the engine gives them,
    else prefill and decode from the request's own timings."""
    stages = _get(data, "stages")
    if stages:
        for st in stages:
            kind = _get(st, "kind") if not isinstance(st, (tuple, list)) else st[0]
            secs = _get(st, "seconds") if not isinstance(st, (tuple, list)) else st[1]
            if secs is None and _get(st, "end_ns") is not None and _get(st, "start_ns") is not None:
                secs = (_get(st, "end_ns") - _get(st, "start_ns")) / 1e9
            secs = _num(secs)
            if kind is not None and secs is not None:
                yield str(getattr(kind, "value", kind)), secs
        return
    for kind in ("prefill", "decode"):
        if values.get(f"{kind}_s") is not None:
            yield kind, values[f"{kind}_s"]


def _client_list(state: Any) -> list[Any]:
    clients = _get(state, "clients") or []
    return list(clients.values()) if isinstance(clients, Mapping) else list(clients)


def _link_list(state: Any) -> list[Any]:
    links = _get(state, "links") or []
    if isinstance(links, Mapping):
        return [dict(v, id=k) if isinstance(v, Mapping) else v for k, v in links.items()]
    return list(links)


class MetricsExporter(Collector):
    """Session-manager observer and Prometheus collector (one per server)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._closed: dict[str, None] = {}
        self._rpc: dict[tuple[str, str], Hist] = {}
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.host = ""
        self.port = 0
        self.registry.register(self)

    # ---- observer hooks (called by the session manager) ----------------------------------
    def on_session_created(self, session_id: str, sim: Any = None) -> None:
        with self._lock:
            if session_id not in self._sessions:
                self._sessions[session_id] = _Session()
        if sim is not None:
            self.on_session_advanced(session_id, sim, events=())

    def on_session_advanced(
        self,
        session_id: str,
        sim: Any,
        events: Iterable[Any] | None = None,
        wall_seconds: float | None = None,
    ) -> None:
        """Record an advance: `events` as returned by it, plus `sim`'s clock and state."""
        now_wall = time.monotonic()
        delta = events_delta(events or ())
        state = sim.state()
        clock_s = int(_get(sim, "now_ns", 0) or 0) / 1e9
        kernel = _num(_get(sim, "events_processed"))
        with self._lock:
            if session_id in self._closed:
                return
            s = self._sessions.get(session_id)
            if s is None:
                s = self._sessions[session_id] = _Session()
            self._apply_state(s, state, delta.models)
            self._apply_delta(s, delta)
            self._apply_clock(s, clock_s, now_wall, wall_seconds)
            if kernel is not None:
                s.kernel_events = kernel

    def on_session_closed(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._closed[session_id] = None
            while len(self._closed) > 100_000:
                self._closed.pop(next(iter(self._closed)))

    def on_rpc(self, method: str, code: Any, seconds: float) -> None:
        code_s = str(getattr(code, "name", code))
        with self._lock:
            h = self._rpc.get((method, code_s))
            if h is None:
                h = self._rpc[(method, code_s)] = Hist(RPC_BUCKETS)
            h.observe(float(seconds))

    # ---- merging (lock held) -------------------------------------------------------------
    @staticmethod
    def _apply_state(s: _Session, state: Any, models: Mapping[str, str]) -> None:
        for c in s.clients.values():
            c.present = False
        for cs in _client_list(state):
            cid = str(_get(cs, "id"))
            model = _get(cs, "model")
            model = ",".join(map(str, model)) if isinstance(model, (list, tuple)) else str(model or "")
            role = str(getattr(_get(cs, "role"), "value", _get(cs, "role")) or "").lower()
            c = s.clients.get(cid)
            if c is None:
                c = s.clients[cid] = _Client(model, role not in NON_LLM_ROLES)
            c.present = True
            c.gauges = {
                "running": _num(_get(cs, "num_running")) or 0.0,
                "waiting": _num(_get(cs, "num_waiting")) or 0.0,
                "kv": _num(_get(cs, "kv_usage")) or 0.0,
                "kv_used_blocks": _num(_get(cs, "kv_used_blocks")) or 0.0,
                "kv_total_blocks": _num(_get(cs, "kv_total_blocks")) or 0.0,
            }
            status = _get(cs, "status")
            c.gauges["up"] = (
                0.0 if str(getattr(status, "value", status)).lower() in ("failed", "removed") else 1.0
            )
            for key in (
                "prompt_tokens_total",
                "generation_tokens_total",
                "preemptions_total",
                "busy_s",
                "energy_j",
                "requests_completed_total",
            ):
                v = _num(_get(cs, key))
                if v is not None:
                    c.counters[key] = v
        for c in s.clients.values():
            if not c.present:
                c.gauges = dict.fromkeys(c.gauges, 0.0)
        for ls in _link_list(state):
            lid = str(_get(ls, "id", _get(ls, "name", "")))
            s.links[lid] = {
                "util": _num(_get(ls, "utilization", _get(ls, "utilisation", _get(ls, "load")))) or 0.0,
                "bytes": _num(_get(ls, "bytes_total", _get(ls, "bytes_moved"))) or 0.0,
            }

    @staticmethod
    def _apply_delta(s: _Session, d: _Delta) -> None:
        for cid, _ in list(d.hists) + list(d.success):
            if cid not in s.clients:
                s.clients[cid] = _Client(d.models.get(cid, ""), True)
        for (cid, name), h in d.hists.items():
            s.clients[cid].hists[name].merge(h)
        for (cid, reason), n in d.success.items():
            succ = s.clients[cid].success
            succ[reason] = succ.get(reason, 0) + n
        for kind, n in d.events.items():
            s.events[kind] = s.events.get(kind, 0) + n
        for reason, n in d.dropped.items():
            s.dropped[reason] = s.dropped.get(reason, 0) + n
        for kind, h in d.stages.items():
            s.stages.setdefault(kind, Hist(STAGE_BUCKETS)).merge(h)

    @staticmethod
    def _apply_clock(s: _Session, clock_s: float, now_wall: float, wall_seconds: float | None) -> None:
        wall = (
            wall_seconds
            if wall_seconds is not None
            else (now_wall - s.last_wall if s.last_wall is not None else None)
        )
        if wall is not None and wall > 0 and clock_s >= s.clock_s:
            s.sim_per_wall = (clock_s - s.clock_s) / wall
        if wall_seconds is not None:
            s.advance_wall_s += wall_seconds
        s.clock_s = clock_s
        s.last_wall = now_wall

    # ---- scrape ----------------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = self._families()
        yield from families

    def _families(self) -> list[Metric]:
        fams: dict[str, Metric] = {}
        for name, (kind, doc, labels) in FAMILIES.items():
            cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}.get(
                kind, HistogramMetricFamily
            )
            fams[name] = cls(name, doc, labels=labels)

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
            if s.kernel_events is not None:
                add("hermes_kernel_events", [sid], s.kernel_events)
            for kind, n in sorted(s.events.items()):
                add("hermes_events", [sid, kind], n)
            for reason, n in sorted(s.dropped.items()):
                add("hermes_requests_dropped", [sid, reason], n)
            for stage, h in s.stages.items():
                add("hermes_stage_latency_seconds", [sid, stage], h)
            for lid, link in s.links.items():
                add("hermes_link_utilization_ratio", [sid, lid], link["util"])
                add("hermes_link_bytes", [sid, lid], link["bytes"])
            for cid, c in s.clients.items():
                self._client_samples(add, sid, cid, c)
        return list(fams.values())

    @staticmethod
    def _client_samples(add: Any, sid: str, cid: str, c: _Client) -> None:
        g, k = c.gauges, c.counters
        add("hermes_client_up", [sid, cid, c.model], g.get("up", 1.0))
        for name, key in _HERMES_CLIENT_GAUGES.items():
            add(name, [sid, cid], g.get(key, 0.0))
        for name, key in _HERMES_CLIENT_COUNTERS.items():
            add(name, [sid, cid], k.get(key, 0.0))
        if not c.llm:
            return
        lv = [c.model, cid, cid, sid]
        for name, key in _VLLM_GAUGES.items():
            add(name, lv, g.get(key, 0.0))
        for name, key in _VLLM_COUNTERS.items():
            add(name, lv, k.get(key, 0.0))
        for reason, n in c.success.items():
            add("vllm:request_success", lv + [reason], n)
        for name, h in c.hists.items():
            add(name, lv, h)

    # ---- HTTP ------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsExporter:
        """Serve /metrics over HTTP on host:port (port 0 picks a free one, see `.port`)."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
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


def start_metrics_server(port: int, host: str = "0.0.0.0") -> MetricsExporter:
    """Create an exporter on a fresh registry and serve it at http://host:port/metrics."""
    return MetricsExporter().serve(port, host)
