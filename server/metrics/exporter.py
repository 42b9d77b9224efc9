"""Prometheus exporter for `hermes serve --metrics-port`.

`MetricsExporter` is the session manager's observer (docs/SERVER_HOOKS.md) and a
Collector on its own CollectorRegistry. After every advance it reads the session's
new request records and its cluster state (the engine records nothing twice) and
folds them into the exporter's own tables, under the exporter's lock, never a
session's: a scrape during a long Advance answers at once. The `vllm:*` families
copy the names, types and buckets of vLLM's v1 Prometheus logger. Every family is
listed in docs/METRICS.md, with the bound on series per session.

Volume: clients and links past `max_clients_per_session` share `_other` series; a closed
session's series stay `closed_grace_s` (so a scrape sees its final values), at most
`max_closed_sessions` of them; `aggregate_sessions=True` drops the `session` label and
sums sessions per client, keeping closed sessions' counters so they never go down.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .families import DEPRECATED_ALIASES, FAMILIES, SESSION, SESSION_ONLY
from .hist import (  # noqa: F401  (re-exported: the bucket sets are part of this module's interface)
    REQUEST_LATENCY_BUCKETS,
    RPC_BUCKETS,
    STAGE_BUCKETS,
    TOKEN_COUNT_BUCKETS,
    TOKEN_GAP_BUCKETS,
    TTFT_BUCKETS,
    Hist,
)
from .http import TokenGate, classic_text_app, serve_app
from .series import ClientCap, Mean, SeriesSet, session_series
from .tables import SessionTable, apply_completions, apply_state, read_simulation, stage_groups_of, text

DEFAULT_CLOSED_GRACE_S = 30.0  # longer than any sensible scrape interval
DEFAULT_MAX_CLIENTS = 16
DEFAULT_MAX_CLOSED = 64
AGGREGATE_CLIENTS_FACTOR = 4  # aggregated: distinct clients across sessions = 4 x the per-session cap
MAX_REAP_REASONS = 8
_KINDS = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}
_RETAINED = frozenset(name for name, (kind, _, _) in FAMILIES.items() if kind in ("counter", "histogram"))


class MetricsExporter(Collector):
    """The session manager's observer and the server's Prometheus collector."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        aggregate_sessions: bool = False,
        closed_grace_s: float = DEFAULT_CLOSED_GRACE_S,
        max_clients_per_session: int = DEFAULT_MAX_CLIENTS,
        max_closed_sessions: int = DEFAULT_MAX_CLOSED,
        deprecated_vllm_series: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not closed_grace_s >= 0:
            raise ValueError(f"closed_grace_s must be >= 0, got {closed_grace_s!r}")
        if max_clients_per_session < 1 or max_closed_sessions < 0:
            raise ValueError("max_clients_per_session must be >= 1 and max_closed_sessions >= 0")
        self.aggregate = bool(aggregate_sessions)
        self.closed_grace_s = float(closed_grace_s)
        self.max_clients = int(max_clients_per_session)
        self.max_closed = int(max_closed_sessions)
        self.deprecated = bool(deprecated_vllm_series)
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionTable] = {}
        self._closed: dict[str, tuple[SessionTable, float]] = {}  # session id -> (tables, drop at)
        self._retired = SeriesSet()  # aggregated: closed sessions' counters and histograms
        self._cap = ClientCap(self.max_clients * AGGREGATE_CLIENTS_FACTOR)
        self._rpc: dict[tuple[str, str], Hist] = {}
        self._reaped: dict[str, float] = {"idle": 0.0, "stream_ended": 0.0}
        self._auth_failures = 0.0
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.host, self.port = "", 0
        self.registry.register(self)

    # ---- observer hooks (docs/SERVER_HOOKS.md) ---------------------------------------------
    def on_session_created(self, session_id: str, sim: Any) -> None:
        """A new (or forked) session: its series appear at once, with any inherited history."""
        with self._lock:
            self._closed.pop(session_id, None)
            self._sessions[session_id] = SessionTable(stage_groups_of(sim))
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
                if session_id in self._closed:  # a late hook after the close revives nothing
                    return
                s = self._sessions[session_id] = SessionTable(stage_groups_of(sim))
        # the session's lock (held by our caller) makes `s`'s cursors ours while we read
        r = read_simulation(sim, s)
        if r.rewound:  # by a Restore: the session's series start afresh
            s = SessionTable(stage_groups_of(sim))
            with self._lock:
                self._sessions[session_id] = s
            r = read_simulation(sim, s)
        with self._lock:
            if self._sessions.get(session_id) is not s:
                return
            s.cursor, s.stage_cursor = r.ends
            apply_state(s, r.state)
            apply_completions(s, r)
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
        """Keep the session's final values for `closed_grace_s`, then drop its series.

        Aggregated, its counters and histograms stay in the sums at once (they never go down)."""
        with self._lock:
            s = self._sessions.pop(session_id, None)
            if s is None:
                return
            if self.aggregate:
                self._retired.merge(session_series(s, self.max_clients), _RETAINED, self._cap)
            elif self.closed_grace_s > 0 and self.max_closed > 0:
                self._closed[session_id] = (s, self.clock() + self.closed_grace_s)
            self._expire()

    def on_session_reaped(self, session_id: str, reason: str) -> None:
        """The server closed a session on its own (idle, stream ended); on_session_closed follows."""
        label = _reason_label(reason)
        with self._lock:
            if label not in self._reaped and len(self._reaped) >= MAX_REAP_REASONS:
                label = "other"
            self._reaped[label] = self._reaped.get(label, 0.0) + 1

    def on_rpc(self, method: str, code: Any, seconds: float) -> None:
        code_name = text(getattr(code, "name", code))
        with self._lock:
            h = self._rpc.get((method, code_name))
            if h is None:
                h = self._rpc[(method, code_name)] = Hist(RPC_BUCKETS)
            h.observe(np.array([seconds]))

    def auth_failed(self) -> None:
        """A scrape was refused (missing or wrong token)."""
        with self._lock:
            self._auth_failures += 1

    # ---- scrape ------------------------------------------------------------------------------
    def _expire(self) -> None:
        """Drop closed sessions past their grace time, and the oldest past `max_closed` (lock held)."""
        now = self.clock()
        for sid in [sid for sid, (_, until) in self._closed.items() if until <= now]:
            del self._closed[sid]
        while len(self._closed) > self.max_closed:
            del self._closed[next(iter(self._closed))]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._expire()
            families = self._families()
        yield from families

    def _families(self) -> list[Metric]:
        drop = set() if self.deprecated else set(DEPRECATED_ALIASES)
        if self.aggregate:
            drop |= SESSION_ONLY
        fams: dict[str, Metric] = {}
        for name, (kind, doc, labels) in FAMILIES.items():
            if name not in drop:
                names = [n for n in labels if n != SESSION] if self.aggregate else labels
                fams[name] = _KINDS[kind](name, doc, labels=names)

        def add(name: str, labels: list[str], value: float | Hist | Mean) -> None:
            if isinstance(value, Hist):
                fams[name].add_metric(labels, value.exposition(), value.total)
            else:
                fams[name].add_metric(labels, value.value if isinstance(value, Mean) else value)

        add("hermes_sessions_open", [], len(self._sessions))
        for reason, n in sorted(self._reaped.items()):
            add("hermes_sessions_reaped", [reason], n)
        add("hermes_metrics_auth_failures", [], self._auth_failures)
        for (method, code), h in sorted(self._rpc.items()):
            add("hermes_rpc_duration_seconds", [method, code], h)
        if self.aggregate:
            total = SeriesSet()
            total.merge(self._retired)
            for s in self._sessions.values():
                total.merge(session_series(s, self.max_clients), cap=self._cap)
            self._emit(total, None, fams, add)
        else:
            shown = list(self._sessions.items()) + [(sid, s) for sid, (s, _) in self._closed.items()]
            for sid, s in shown:
                self._emit(session_series(s, self.max_clients, self.deprecated), sid, fams, add)
        return list(fams.values())

    @staticmethod
    def _emit(series: SeriesSet, sid: str | None, fams: dict[str, Metric], add: Callable[..., None]) -> None:
        for family, values in series.data.items():
            if family not in fams:
                continue
            at = FAMILIES[family][2].index(SESSION) if sid is not None else -1
            for labels, v in values.items():
                full = list(labels)
                if at >= 0:
                    full.insert(at, sid)
                add(family, full, v)

    def series_count(self) -> int:
        """Samples the next scrape would serve (for tests and docs/METRICS.md's measurements)."""
        return sum(len(m.samples) for m in self.collect())

    # ---- HTTP --------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "0.0.0.0", token: str | None = None) -> MetricsExporter:
        """Serve /metrics on host:port in a daemon thread (port 0 picks one; see `.port`).

        With `token`, a scrape must send `Authorization: Bearer TOKEN` (else 401, logged)."""
        app = classic_text_app(self.registry)
        if token is not None:
            app = TokenGate(app, token, on_failure=self.auth_failed)
        self._http, self._thread = serve_app(app, host, port)
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


def _reason_label(reason: Any) -> str:
    label = re.sub(r"[^a-z0-9_]", "_", str(reason).lower())[:32]
    return label or "other"


def start_metrics_server(port: int, host: str = "0.0.0.0", token: str | None = None,
                         **options: Any) -> MetricsExporter:
    """A new exporter on a fresh registry, serving http://host:port/metrics.

    `token`: require `Authorization: Bearer TOKEN`; `options` go to MetricsExporter
    (`aggregate_sessions`, `closed_grace_s`, `max_clients_per_session`, ...)."""
    return MetricsExporter(**options).serve(port, host, token)
