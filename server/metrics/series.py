"""A session's series as data (family -> labels -> value), built at scrape time from its tables.

Labels here leave `session` out; the exporter puts it in (one set per session) or sums the
sets of all sessions (`aggregate_sessions`). Clients and links past the cap share one
`_other` series per family, so a session's series count has a fixed bound (`series_bound`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .families import (
    DEPRECATED_ALIASES,
    FAMILIES,
    FINISHED_REASON,
    GONE_ZERO_FIELDS,
    HERMES_STATE_FIELDS,
    MERGE,
    OTHER,
    REQUEST_HISTOGRAMS,
    SESSION,
    SESSION_STATE_FIELDS,
    VLLM_STATE_FIELDS,
)
from .hist import STAGE_BUCKETS, Hist
from .tables import ClientTable, SessionTable, attr, number, text

# labels that name a client (replaced by `_other` past the cap)
CLIENT_LABELS = frozenset({"client", "engine", "model_name", "hardware", "role"})


class Mean:
    """A weighted mean being accumulated (KV usage weighted by KV blocks, link use equally)."""

    __slots__ = ("num", "den")

    def __init__(self, num: float = 0.0, den: float = 0.0) -> None:
        self.num, self.den = num, den

    def add(self, other: Mean) -> None:
        self.num += other.num
        self.den += other.den

    def copy(self) -> Mean:
        return Mean(self.num, self.den)

    @property
    def value(self) -> float:
        return self.num / self.den if self.den else 0.0


Value = float | Hist | Mean


class SeriesSet:
    """family -> labels (without `session`) -> value; adding to an existing series merges (MERGE)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[tuple[str, ...], Value]] = {}

    def add(self, family: str, labels: tuple[str, ...], value: Value, weight: float = 1.0) -> None:
        rule = MERGE.get(family, "sum")
        if rule == "mean" and not isinstance(value, Mean):
            value = Mean(float(value) * weight, weight)
        series = self.data.setdefault(family, {})
        old = series.get(labels)
        if old is None:
            series[labels] = value.copy() if isinstance(value, (Hist, Mean)) else float(value)
        elif isinstance(old, (Hist, Mean)):
            old.add(value)  # type: ignore[arg-type]
        elif rule == "max":
            series[labels] = max(old, float(value))  # type: ignore[arg-type]
        else:
            series[labels] = old + float(value)  # type: ignore[operator]

    def merge(self, other: SeriesSet, families: Iterable[str] | None = None, cap: ClientCap | None = None) -> None:
        """Add `other`'s series (only `families`, if given), relabelling clients past `cap`."""
        wanted = set(families) if families is not None else None
        for family, series in other.data.items():
            if wanted is not None and family not in wanted:
                continue
            for labels, v in series.items():
                self.add(family, cap.relabel(family, labels) if cap else labels, v)

    def __len__(self) -> int:
        """Samples this set exposes (a histogram: its buckets, +Inf, _sum and _count)."""
        return sum(
            (v.counts.size + 2) if isinstance(v, Hist) else 1 for series in self.data.values() for v in series.values()
        )


class ClientCap:
    """Which clients and links get their own series when sessions are summed; the rest `_other`.

    Admission is first come, for the exporter's life (closed sessions' counters stay), so the
    aggregated series are bounded however many sessions, specs or client names come and go."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: dict[str, set[str]] = {"client": set(), "link": set()}

    def relabel(self, family: str, labels: tuple[str, ...]) -> tuple[str, ...]:
        names = [n for n in FAMILIES[family][2] if n != SESSION]
        key = "client" if "client" in names else "link" if "link" in names else None
        if key is None:
            return labels
        value, admitted = labels[names.index(key)], self.admitted[key]
        if value in admitted or value == OTHER:
            return labels
        if len(admitted) < self.limit:
            admitted.add(value)
            return labels
        folded = CLIENT_LABELS | {"link"}
        return tuple(OTHER if n in folded else v for n, v in zip(names, labels, strict=True))


def session_series(s: SessionTable, max_clients: int, deprecated: bool = False) -> SeriesSet:
    """Everything one session exposes; clients and links past `max_clients` fold into `_other`."""
    out = SeriesSet()
    out.add("hermes_simulated_time_seconds", (), s.clock_s)
    out.add("hermes_sim_seconds_per_wall_second", (), s.sim_per_wall)
    out.add("hermes_advance_wall_seconds", (), s.advance_wall_s)
    if s.events_processed is not None:
        out.add("hermes_events_processed", (), s.events_processed)
    for name, f in SESSION_STATE_FIELDS.items():
        out.add(name, (), number(s.snap, f))
    for stage, h in s.stages.items():
        out.add("hermes_stage_latency_seconds", (stage,), h)
    for i, (lid, (util, moved)) in enumerate(s.links.items()):
        key = lid if i < max_clients else OTHER
        out.add("hermes_link_utilization_ratio", (key,), util)
        out.add("hermes_link_bytes", (key,), moved)
    for i, (cid, c) in enumerate(s.clients.items()):
        _client_series(out, cid if i < max_clients else OTHER, c, deprecated)
    return out


def _client_series(out: SeriesSet, cid: str, c: ClientTable, deprecated: bool) -> None:
    def field_value(f: str) -> float:
        # a client gone from the cluster runs nothing; its counters keep their last values
        return 0.0 if not c.present and f in GONE_ZERO_FIELDS else number(c.snap, f)

    model, hardware, role = (OTHER, OTHER, OTHER) if cid == OTHER else (c.model, c.hardware, c.role)
    up = c.present and text(attr(c.snap, "status", "")).lower() not in ("failed", "removed")
    out.add("hermes_client_info", (cid, model, hardware, role), 1.0)
    out.add("hermes_client_up", (cid,), 1.0 if up else 0.0)
    for name, f in HERMES_STATE_FIELDS.items():
        out.add(name, (cid,), field_value(f))
    if not c.llm:
        return
    labels = (model, cid, cid)  # model_name, engine, client
    for name, f in VLLM_STATE_FIELDS.items():
        out.add(name, labels, field_value(f))
    usage, blocks = field_value("kv_usage"), max(number(c.snap, "kv_total_blocks"), 1.0)
    out.add("vllm:kv_cache_usage_perc", labels, usage, blocks)
    out.add("vllm:request_success", labels + (FINISHED_REASON,), c.completed)
    for name, h in c.hists.items():
        out.add(name, labels, h)
    if deprecated:
        for alias, source in DEPRECATED_ALIASES.items():
            out.add(alias, labels, c.hists[source] if source in c.hists else Mean(usage * blocks, blocks))


def series_bound(clients: int, links: int, stage_kinds: int, max_clients: int) -> int:
    """The most series one session can expose (per-session mode, without deprecated aliases)."""
    per_client = (
        2  # info, up
        + len(HERMES_STATE_FIELDS)
        + len(VLLM_STATE_FIELDS)
        + 2  # kv usage, request_success
        + sum(len(b) + 3 for _, b in REQUEST_HISTOGRAMS.values())
    )
    fixed = 4 + len(SESSION_STATE_FIELDS)
    return (
        fixed
        + min(stage_kinds, 7) * (len(STAGE_BUCKETS) + 3)
        + 2 * min(links, max_clients + 1)
        + per_client * min(clients, max_clients + 1)
    )
