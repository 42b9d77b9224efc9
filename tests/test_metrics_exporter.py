"""Unit tests of server/metrics/exporter.py against a stand-in simulation (no server, no engine)."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import sample_names, samples, scrape, value  # noqa: E402

from server.metrics import exporter as mx  # noqa: E402
from sim_engine.views import GROUP_CODES  # noqa: E402

NS = 1_000_000_000


@dataclass
class FakeClient:
    id: str
    model: str = "Llama-3.1-8B"
    hardware: str = "H100-SXM"
    role: str = "both"
    status: str = "active"
    num_waiting: int = 0
    num_running: int = 0
    kv_used_blocks: int = 0
    kv_total_blocks: int = 1000
    kv_usage: float = 0.0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    preemptions_total: int = 0
    requests_completed_total: int = 0
    busy_s: float = 0.0
    energy_j: float = 0.0


@dataclass
class FakeState:
    clients: list[FakeClient]
    injected: int = 0
    completed: int = 0
    dropped: int = 0
    in_flight: int = 0
    pending_decisions: int = 0
    links: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FakeStage:
    group: str


@dataclass
class FakeSpec:
    pipelines: dict = field(default_factory=lambda: {"default": (FakeStage("prefill"), FakeStage("decode"))})


@dataclass
class FakeKernel:
    events_processed: int = 0


@dataclass
class FakeSim:
    """Just the engine surface the exporter reads: now_ns, kernel, clients, state(), request_records(),
    stage_records."""

    clients: list[FakeClient] = field(default_factory=lambda: [FakeClient("h100-0"), FakeClient("a100-0")])
    now_ns: int = 0
    rows: list[tuple] = field(default_factory=list)
    stage_rows: list[tuple] = field(default_factory=list)
    links: dict = field(default_factory=dict)
    kernel: FakeKernel = field(default_factory=lambda: FakeKernel())
    spec: FakeSpec = field(default_factory=FakeSpec)

    @property
    def stage_records(self) -> FakeStageRecords:
        return FakeStageRecords(self.stage_rows)

    def complete(self, client: int, arrival: float, scheduled: float, first: float, finish: float,
                 prompt: int = 100, output: int = 10, decode_client: int | None = None) -> None:
        idx = len(self.rows)
        dc = client if decode_client is None else decode_client
        self.stage_rows.append((idx, GROUP_CODES["prefill"], dc, int(arrival * NS), int(first * NS)))  # prefill
        self.stage_rows.append((idx, GROUP_CODES["decode"], dc, int(first * NS), int(finish * NS)))  # decode
        self.rows.append((idx, 1, client, int(arrival * NS), int(scheduled * NS), int(first * NS),
                          int(finish * NS), prompt, output))
        self.clients[dc].requests_completed_total += 1
        self.now_ns = max(self.now_ns, int(finish * NS))

    def state(self) -> FakeState:
        done = len(self.rows)
        return FakeState(self.clients, injected=done, completed=done, links=self.links)

    def request_records(self) -> dict[str, np.ndarray]:
        return columns(self.rows, ("idx", "status", "client", "arrival_ns", "scheduled_ns", "first_token_ns",
                                   "finish_ns", "prompt_tokens", "output_tokens"))


def columns(rows: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    data = np.array(rows, dtype=np.int64).reshape(len(rows), len(names))
    return {c: data[:, i] for i, c in enumerate(names)}


@dataclass
class FakeStageRecords:
    rows: list[tuple]

    def arrays(self) -> dict[str, np.ndarray]:
        return columns(self.rows, ("idx", "group", "client", "ready_ns", "end_ns"))


def exposition(ex: mx.MetricsExporter) -> str:
    from prometheus_client import generate_latest

    return generate_latest(ex.registry).decode()


def test_bucket_sets_are_vllms() -> None:
    # vllm/v1/metrics/loggers.py (checked against vLLM's source)
    assert mx.TTFT_BUCKETS[0] == 0.001 and mx.TTFT_BUCKETS[-1] == 2560.0 and len(mx.TTFT_BUCKETS) == 22
    assert mx.TOKEN_GAP_BUCKETS[0] == 0.01 and mx.TOKEN_GAP_BUCKETS[-1] == 80.0 and len(mx.TOKEN_GAP_BUCKETS) == 19
    assert mx.REQUEST_LATENCY_BUCKETS[0] == 0.3 and mx.REQUEST_LATENCY_BUCKETS[-1] == 7680.0
    assert len(mx.REQUEST_LATENCY_BUCKETS) == 21
    assert mx.TOKEN_COUNT_BUCKETS[:4] == (1.0, 2.0, 5.0, 10.0)


def test_hist_uses_le_semantics_and_weights() -> None:
    h = mx.Hist((1.0, 2.0))
    h.observe(np.array([0.5, 1.0, 1.5, 3.0]))
    h.observe(np.array([2.0]), np.array([4]))
    assert h.exposition() == [("1.0", 2), ("2.0", 7), ("+Inf", 8)]
    assert h.count == 8 and h.total == pytest.approx(0.5 + 1.0 + 1.5 + 3.0 + 8.0)


@pytest.mark.slow
def test_completions_feed_vllm_histograms_per_client() -> None:
    ex, sim = mx.MetricsExporter(), FakeSim()
    ex.on_session_created("s1", sim)
    sim.complete(0, 0.0, 0.1, 0.3, 1.2, output=10)  # ttft 0.3, queue 0.1, prefill 0.2, decode 0.9
    sim.complete(1, 0.5, 0.5, 0.55, 0.65, output=1)  # one token: no inter-token gaps
    sim.clients[0].num_running, sim.clients[0].kv_usage = 3, 0.25
    ex.on_session_advanced("s1", sim, events=(), wall_seconds=0.5)
    text = exposition(ex)
    lab0 = {"session": "s1", "client": "h100-0", "engine": "h100-0", "model_name": "Llama-3.1-8B"}
    assert value(text, "vllm:time_to_first_token_seconds_count", **lab0) == 1
    assert value(text, "vllm:time_to_first_token_seconds_sum", **lab0) == pytest.approx(0.3)
    assert value(text, "vllm:time_to_first_token_seconds_bucket", le="0.25", **lab0) == 0
    assert value(text, "vllm:time_to_first_token_seconds_bucket", le="0.5", **lab0) == 1
    assert value(text, "vllm:request_queue_time_seconds_sum", **lab0) == pytest.approx(0.1)
    assert value(text, "vllm:request_prefill_time_seconds_sum", **lab0) == pytest.approx(0.2)
    assert value(text, "vllm:request_decode_time_seconds_sum", **lab0) == pytest.approx(0.9)
    assert value(text, "vllm:e2e_request_latency_seconds_sum", **lab0) == pytest.approx(1.2)
    # 9 gaps of 0.1 s each
    assert value(text, "vllm:inter_token_latency_seconds_count", **lab0) == 9
    assert value(text, "vllm:inter_token_latency_seconds_sum", **lab0) == pytest.approx(0.9)
    assert value(text, "vllm:time_per_output_token_seconds_count", **lab0) is None  # deprecated: opt-in
    assert value(text, "vllm:request_time_per_output_token_seconds_count", **lab0) == 1
    assert value(text, "vllm:request_success_total", finished_reason="stop", **lab0) == 1
    assert value(text, "vllm:num_requests_running", **lab0) == 3
    assert value(text, "vllm:kv_cache_usage_perc", **lab0) == 0.25
    lab1 = dict(lab0, client="a100-0", engine="a100-0")
    assert value(text, "vllm:time_to_first_token_seconds_count", **lab1) == 1
    assert value(text, "vllm:inter_token_latency_seconds_count", **lab1) == 0
    assert value(text, "hermes_simulated_time_seconds", session="s1") == pytest.approx(1.2)
    assert value(text, "hermes_sim_seconds_per_wall_second", session="s1") == pytest.approx(1.2 / 0.5)
    assert value(text, "hermes_stage_latency_seconds_count", session="s1", stage="prefill") == 2
    assert value(text, "hermes_stage_latency_seconds_sum", session="s1", stage="decode") == pytest.approx(1.0)
    # only the stage kinds the session's pipelines have
    assert value(text, "hermes_stage_latency_seconds_count", session="s1", stage="rag") is None
    assert value(text, "hermes_sessions_open") == 1


def test_each_record_is_observed_once() -> None:
    ex, sim = mx.MetricsExporter(), FakeSim()
    ex.on_session_created("s1", sim)
    for i in range(5):
        sim.complete(i % 2, i, i, i + 0.1, i + 0.5)
        ex.on_session_advanced("s1", sim)
        ex.on_session_advanced("s1", sim)  # no new records: nothing added
    text = exposition(ex)
    assert value(text, "vllm:time_to_first_token_seconds_count", client="h100-0") == 3
    assert value(text, "vllm:time_to_first_token_seconds_count", client="a100-0") == 2


def test_restore_rewinds_the_sessions_series() -> None:
    ex, sim = mx.MetricsExporter(), FakeSim()
    ex.on_session_created("s1", sim)
    sim.complete(0, 0, 0, 0.1, 0.5)
    sim.complete(0, 1, 1, 1.1, 1.5)
    ex.on_session_advanced("s1", sim)
    restored = FakeSim(rows=sim.rows[:1], stage_rows=sim.stage_rows[:2], now_ns=sim.rows[0][6])
    ex.on_session_advanced("s1", restored)
    assert value(exposition(ex), "vllm:time_to_first_token_seconds_count", client="h100-0") == 1


def test_sessions_do_not_mix_and_close_removes_series() -> None:
    ex, a, b = mx.MetricsExporter(closed_grace_s=0), FakeSim(), FakeSim()
    ex.on_session_created("a", a)
    ex.on_session_created("b", b)
    a.complete(0, 0, 0, 0.2, 1.0)
    b.complete(1, 0, 0, 0.7, 2.0)
    b.complete(1, 0, 0, 0.9, 2.0)
    ex.on_session_advanced("a", a)
    ex.on_session_advanced("b", b)
    text = exposition(ex)
    assert value(text, "vllm:time_to_first_token_seconds_sum", session="a", client="h100-0") == pytest.approx(0.2)
    assert value(text, "vllm:time_to_first_token_seconds_count", session="a", client="a100-0") == 0
    assert value(text, "vllm:time_to_first_token_seconds_sum", session="b", client="a100-0") == pytest.approx(1.6)
    ex.on_session_closed("a")
    text = exposition(ex)
    assert not [s for s in samples(text) if s[1].get("session") == "a"]
    assert [s for s in samples(text) if s[1].get("session") == "b"]
    assert value(text, "hermes_sessions_open") == 1
    ex.on_session_advanced("a", a)  # a late hook for an unknown session recreates nothing harmful
    ex.on_session_closed("a")
    assert not [s for s in samples(exposition(ex)) if s[1].get("session") == "a"]


def test_non_llm_clients_get_no_vllm_series() -> None:
    ex = mx.MetricsExporter()
    sim = FakeSim(clients=[FakeClient("llm-0"), FakeClient("emb-0", role="embedding")])
    ex.on_session_created("s", sim)
    text = exposition(ex)
    assert value(text, "vllm:num_requests_running", client="llm-0") == 0
    assert value(text, "vllm:num_requests_running", client="emb-0") is None
    assert value(text, "hermes_client_up", client="emb-0") == 1


def test_rpc_latency_by_method_and_code() -> None:
    ex = mx.MetricsExporter()
    ex.on_rpc("Advance", "OK", 0.002)
    ex.on_rpc("Advance", "OK", 0.2)
    ex.on_rpc("Inject", "OUT_OF_RANGE", 0.001)
    text = exposition(ex)
    assert value(text, "hermes_rpc_duration_seconds_count", method="Advance", code="OK") == 2
    assert value(text, "hermes_rpc_duration_seconds_count", method="Inject", code="OUT_OF_RANGE") == 1


def test_no_request_ids_and_bounded_labels() -> None:
    ex, sim = mx.MetricsExporter(), FakeSim()
    ex.on_session_created("s1", sim)
    for i in range(50):
        sim.complete(i % 2, i, i, i + 0.1, i + 0.5)
    ex.on_session_advanced("s1", sim)
    allowed = {"session", "client", "engine", "model_name", "finished_reason", "le", "stage", "method", "code",
               "link", "hardware", "role", "reason"}
    for _, labels, _ in samples(exposition(ex)):
        assert set(labels) <= allowed


@pytest.mark.slow
def test_http_server_scrape_is_not_blocked_by_a_held_session_lock() -> None:
    ex = mx.start_metrics_server(0, "127.0.0.1")
    try:
        sim = FakeSim()
        ex.on_session_created("s1", sim)
        session_lock = threading.Lock()  # what the session manager holds during an Advance
        with session_lock:
            t0 = time.monotonic()
            text = scrape(f"http://127.0.0.1:{ex.port}/metrics")
            assert time.monotonic() - t0 < 2.0
        assert "vllm:num_requests_running" in sample_names(text)
    finally:
        ex.stop()
        ex.stop()


def test_link_utilisation_and_bytes() -> None:
    ex = mx.MetricsExporter()
    sim = FakeSim(links={"nvlink-0": {"bytes_moved": 2.5e9, "busy_ns": 10, "utilization": 0.4}})
    ex.on_session_created("s", sim)
    text = exposition(ex)
    assert value(text, "hermes_link_bytes_total", session="s", link="nvlink-0") == 2.5e9
    assert value(text, "hermes_link_utilization_ratio", session="s", link="nvlink-0") == 0.4


def test_requests_belong_to_the_client_that_generated_their_tokens() -> None:
    ex = mx.MetricsExporter()
    sim = FakeSim(clients=[FakeClient("dec-0"), FakeClient("guard", role="generic")])
    ex.on_session_created("s", sim)
    sim.complete(1, 0, 0, 0.2, 1.0, decode_client=0)  # ended on the guard stage, decoded on dec-0
    ex.on_session_advanced("s", sim)
    text = exposition(ex)
    assert value(text, "vllm:time_to_first_token_seconds_count", client="dec-0") == 1
    assert value(text, "vllm:time_to_first_token_seconds_count", client="guard") is None


@pytest.mark.slow
def test_metrics_endpoint_keeps_colon_names_whatever_the_client_accepts() -> None:
    import urllib.request

    ex = mx.start_metrics_server(0, "127.0.0.1")
    try:
        ex.on_session_created("s1", FakeSim())
        prometheus_accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                             "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        req = urllib.request.Request(f"http://127.0.0.1:{ex.port}/metrics", headers={"Accept": prometheus_accept})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/plain")
        assert 'vllm:num_requests_running{client="h100-0"' in body
        assert "vllm_num_requests_running" not in body
    finally:
        ex.stop()


def test_missing_tools_skip_locally_but_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import metrics_support as support

    monkeypatch.setattr(support.shutil, "which", lambda name: None)
    monkeypatch.delenv("HERMES_REQUIRE_TOOLS", raising=False)
    monkeypatch.setattr(support, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="prometheus not found"):
        support.require_tool("prometheus", "test")
    monkeypatch.setattr(support, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        support.require_tool("prometheus", "test")
    # scripts/test.sh says whether it could install the tools (root) or not
    monkeypatch.setenv("HERMES_REQUIRE_TOOLS", "0")
    with pytest.raises(pytest.skip.Exception, match="prometheus not found"):
        support.require_tool("prometheus", "test")
    monkeypatch.setenv("HERMES_REQUIRE_TOOLS", "1")
    monkeypatch.setattr(support, "IN_CI", False)
    with pytest.raises(pytest.fail.Exception, match="must have it"):
        support.require_tool("prometheus", "test")


# ---------------------------------------------------------------- volume: grace, caps, aggregation


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def session_samples(text: str, sid: str) -> list[tuple[str, dict[str, str], float]]:
    return [s for s in samples(text) if s[1].get("session") == sid]


def test_a_closed_session_keeps_its_final_values_for_the_grace_time() -> None:
    clock = FakeClock()
    ex, sim = mx.MetricsExporter(closed_grace_s=30.0, clock=clock), FakeSim()
    ex.on_session_created("short", sim)
    sim.complete(0, 0, 0, 0.2, 1.0)
    ex.on_session_advanced("short", sim)
    before = session_samples(exposition(ex), "short")
    ex.on_session_closed("short")
    clock.t += 29.9
    text = exposition(ex)
    assert session_samples(text, "short") == before  # the final values, unchanged
    assert value(text, "hermes_sessions_open") == 0
    ex.on_session_advanced("short", sim)  # a late hook does not revive it
    clock.t += 0.2
    assert session_samples(exposition(ex), "short") == []


def test_a_new_session_with_a_closed_ones_id_replaces_it() -> None:
    ex, sim = mx.MetricsExporter(clock=FakeClock()), FakeSim()
    ex.on_session_created("s", sim)
    sim.complete(0, 0, 0, 0.2, 1.0)
    ex.on_session_advanced("s", sim)
    ex.on_session_closed("s")
    ex.on_session_created("s", FakeSim())
    text = exposition(ex)
    assert value(text, "vllm:time_to_first_token_seconds_count", session="s", client="h100-0") == 0
    assert value(text, "hermes_sessions_open") == 1


def test_closed_sessions_kept_are_capped_oldest_first() -> None:
    ex = mx.MetricsExporter(max_closed_sessions=2, clock=FakeClock())
    for sid in ("a", "b", "c"):
        ex.on_session_created(sid, FakeSim())
        ex.on_session_closed(sid)
    shown = {s[1]["session"] for s in samples(exposition(ex)) if "session" in s[1]}
    assert shown == {"b", "c"}


def many_clients(n: int, role: str = "both") -> list[FakeClient]:
    return [FakeClient(f"gpu-{i}", role=role, num_running=i, kv_used_blocks=10 * i, kv_usage=i / 100)
            for i in range(n)]


def test_clients_past_the_cap_share_one_other_series() -> None:
    ex = mx.MetricsExporter(max_clients_per_session=4)
    sim = FakeSim(clients=many_clients(10))
    ex.on_session_created("s", sim)
    for i in range(10):
        sim.complete(i, 0, 0, 0.1 * (i + 1), 2.0)
    ex.on_session_advanced("s", sim)
    text = exposition(ex)
    running = {lab["client"]: v for n, lab, v in samples(text) if n == "vllm:num_requests_running"}
    assert running == {"gpu-0": 0, "gpu-1": 1, "gpu-2": 2, "gpu-3": 3, "_other": sum(range(4, 10))}
    ttft = {lab["client"]: v for n, lab, v in samples(text) if n == "vllm:time_to_first_token_seconds_count"}
    assert ttft == {"gpu-0": 1, "gpu-1": 1, "gpu-2": 1, "gpu-3": 1, "_other": 6}
    # KV usage of the folded clients: their mean weighted by KV blocks (all 1000 here)
    usage = value(text, "vllm:kv_cache_usage_perc", client="_other")
    assert usage == pytest.approx(sum(i / 100 for i in range(4, 10)) / 6)
    assert value(text, "hermes_client_up", client="_other") == 6
    assert value(text, "hermes_client_info", client="_other", model_name="_other") == 1


@pytest.mark.slow
def test_series_per_session_stay_under_the_documented_bound() -> None:
    from server.metrics.series import series_bound

    links = {f"link-{i}": {"bytes_moved": 1.0, "utilization": 0.1} for i in range(30)}
    for n in (1, 3, 8, 9, 40):
        ex = mx.MetricsExporter(max_clients_per_session=8)
        sim = FakeSim(clients=many_clients(n), links=links)
        ex.on_session_created("s", sim)
        count = len(session_samples(exposition(ex), "s"))
        bound = series_bound(n, len(links), stage_kinds=2, max_clients=8)
        assert count == bound, n  # the bound is exact for LLM clients
    assert series_bound(10_000, 10_000, 7, mx.DEFAULT_MAX_CLIENTS) == 4418  # docs/METRICS.md


def test_aggregate_sums_sessions_per_client_without_a_session_label() -> None:
    ex = mx.MetricsExporter(aggregate_sessions=True)
    a, b = FakeSim(), FakeSim()
    ex.on_session_created("a", a)
    ex.on_session_created("b", b)
    a.complete(0, 0, 0, 0.2, 1.0)
    b.complete(0, 0, 0, 0.5, 1.0)
    b.complete(1, 0, 0, 0.5, 1.0)
    a.clients[0].num_running, b.clients[0].num_running = 2, 5
    ex.on_session_advanced("a", a)
    ex.on_session_advanced("b", b)
    text = exposition(ex)
    assert not [s for s in samples(text) if "session" in s[1]]
    assert value(text, "vllm:time_to_first_token_seconds_count", client="h100-0") == 2
    assert value(text, "vllm:time_to_first_token_seconds_sum", client="h100-0") == pytest.approx(0.7)
    assert value(text, "vllm:num_requests_running", client="h100-0") == 7
    assert value(text, "hermes_requests_completed_total") == 3
    assert value(text, "hermes_simulated_time_seconds") is None  # a session's own clock
    ex.on_session_closed("b")
    text = exposition(ex)
    # counters and histograms keep the closed session's part; its gauges leave the sums
    assert value(text, "vllm:time_to_first_token_seconds_count", client="h100-0") == 2
    assert value(text, "vllm:request_success_total", client="a100-0") == 1
    assert value(text, "hermes_requests_completed_total") == 3
    assert value(text, "vllm:num_requests_running", client="h100-0") == 2
    assert value(text, "hermes_sessions_open") == 1
    ex.on_session_closed("a")
    text = exposition(ex)
    assert value(text, "vllm:time_to_first_token_seconds_count", client="h100-0") == 2
    assert value(text, "vllm:num_requests_running", client="h100-0") is None


@pytest.mark.slow
def test_aggregate_series_do_not_grow_with_sessions_or_client_names() -> None:
    ex = mx.MetricsExporter(aggregate_sessions=True, max_clients_per_session=2)
    counts = []
    for i in range(20):
        links = {f"l{i}-{j}": {"bytes_moved": 1.0, "utilization": 0.5} for j in range(3)}
        sim = FakeSim(clients=[FakeClient(f"c{i}-{j}") for j in range(3)], links=links)  # new names every time
        ex.on_session_created(f"s{i}", sim)
        sim.complete(0, 0, 0, 0.2, 1.0)
        ex.on_session_advanced(f"s{i}", sim)
        ex.on_session_closed(f"s{i}")
        counts.append(ex.series_count())
    assert counts[-1] == counts[10]  # the cap (4 x 2 clients + _other) was reached and holds
    text = exposition(ex)
    clients = {lab["client"] for n, lab, _ in samples(text) if n == "vllm:request_success_total"}
    assert len(clients) == 2 * mx.AGGREGATE_CLIENTS_FACTOR + 1 and "_other" in clients
    assert sum(v for n, _, v in samples(text) if n == "vllm:request_success_total") == 20
    links = {lab["link"]: v for n, lab, v in samples(text) if n == "hermes_link_bytes_total"}
    assert len(links) == 2 * mx.AGGREGATE_CLIENTS_FACTOR + 1 and sum(links.values()) == 60


def test_many_sessions_volume_drops_when_aggregated() -> None:
    """Issue 12's many-sessions case, smaller (docs/METRICS.md has the 64-session numbers)."""
    def fill(ex: mx.MetricsExporter) -> int:
        for i in range(16):
            sim = FakeSim(clients=many_clients(3))
            ex.on_session_created(f"session-{i:04d}", sim)
            sim.complete(i % 3, 0, 0, 0.2, 1.0)
            ex.on_session_advanced(f"session-{i:04d}", sim)
        return ex.series_count()

    per_session, aggregated = fill(mx.MetricsExporter()), fill(mx.MetricsExporter(aggregate_sessions=True))
    legacy = fill(mx.MetricsExporter(deprecated_vllm_series=True))
    assert aggregated < per_session / 10
    assert legacy - per_session == 16 * 3 * (len(mx.TOKEN_GAP_BUCKETS) + 3 + 1)


def test_reaped_sessions_are_counted_by_reason() -> None:
    ex = mx.MetricsExporter()
    text = exposition(ex)
    assert value(text, "hermes_sessions_reaped_total", reason="idle") == 0  # present before the first
    ex.on_session_created("s", FakeSim())
    ex.on_session_reaped("s", "idle")
    ex.on_session_closed("s")
    ex.on_session_reaped("t", "Stream Ended!")
    for i in range(20):  # reasons are a bounded label
        ex.on_session_reaped("u", f"reason-{i}")
    text = exposition(ex)
    assert value(text, "hermes_sessions_reaped_total", reason="idle") == 1
    assert value(text, "hermes_sessions_reaped_total", reason="stream_ended_") == 1
    reasons = {lab["reason"] for n, lab, _ in samples(text) if n == "hermes_sessions_reaped_total"}
    assert len(reasons) <= mx.MAX_REAP_REASONS + 1 and "other" in reasons


def test_reaped_hook_reaches_the_exporter_through_the_servers_hooks() -> None:
    from server.hooks import Hooks

    hooks = Hooks([ex := mx.MetricsExporter()])
    if not hasattr(hooks, "session_reaped"):
        pytest.skip("server/hooks.py has no session_reaped yet (added by the session-lifecycle work)")
    hooks.session_reaped("s", "idle")
    assert value(exposition(ex), "hermes_sessions_reaped_total", reason="idle") == 1


def test_deprecated_vllm_aliases_on_request() -> None:
    ex, sim = mx.MetricsExporter(deprecated_vllm_series=True), FakeSim()
    sim.clients[0].kv_usage = 0.5
    ex.on_session_created("s", sim)
    sim.complete(0, 0, 0, 0.2, 1.1, output=10)
    ex.on_session_advanced("s", sim)
    text = exposition(ex)
    assert value(text, "vllm:gpu_cache_usage_perc", client="h100-0") == 0.5
    assert value(text, "vllm:time_per_output_token_seconds_count", client="h100-0") == 9


def test_bad_options_are_refused() -> None:
    for kw in ({"closed_grace_s": -1}, {"closed_grace_s": float("nan")}, {"max_clients_per_session": 0},
               {"max_closed_sessions": -1}):
        with pytest.raises(ValueError):
            mx.MetricsExporter(**kw)


# ---------------------------------------------------------------- /metrics token


def call_app(app, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "REMOTE_ADDR": "10.0.0.7", "QUERY_STRING": "",
               "SERVER_NAME": "x", "SERVER_PORT": "1", "wsgi.url_scheme": "http"}
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    got: dict[str, object] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(hdrs)

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body  # type: ignore[return-value]


@pytest.fixture()
def log_lines():
    import io
    import logging

    from server import jsonlog

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(jsonlog.JsonLinesFormatter())
    logger = logging.getLogger(jsonlog.LOGGER_NAME)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [line for line in stream.getvalue().splitlines() if line]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_token_gate_accepts_bearer_in_any_case_and_refuses_the_rest(log_lines) -> None:
    import json

    from server.metrics.http import TokenGate, classic_text_app

    ex = mx.MetricsExporter()
    clock = FakeClock()
    gate = TokenGate(classic_text_app(ex.registry), "s3cret-token", on_failure=ex.auth_failed, clock=clock)
    for scheme in ("Bearer", "bearer", "BEARER"):
        status, _, body = call_app(gate, {"Authorization": f"{scheme} s3cret-token"})
        assert status.startswith("200") and b"hermes_sessions_open" in body
    refused = [{}, {"Authorization": "Bearer guess-XYZ"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"},
               {"Authorization": "s3cret-token"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer s3cret"}]
    for i, headers in enumerate(refused):
        clock.t += 1.0 if i != 3 else 0.1  # the fourth falls inside the log limit
        status, hdrs, body = call_app(gate, headers)
        assert status.startswith("401") and b"hermes" not in body
        assert hdrs["WWW-Authenticate"].startswith("Bearer")
    lines = [json.loads(line) for line in log_lines()]
    assert len(lines) == len(refused) - 1
    assert all(x["msg"] == "metrics scrape refused" and x["peer"] == "10.0.0.7" for x in lines)
    assert [x["reason"] for x in lines[:3]] == ["missing authorization header", "wrong bearer token",
                                                 "authorization scheme is not Bearer"]
    assert lines[3]["suppressed_since_last"] == 1
    assert not [line for line in log_lines() if "s3cret" in line or "XYZ" in line]  # no token echoed
    _, _, body = call_app(gate, {"Authorization": "Bearer s3cret-token"})
    assert value(body.decode(), "hermes_metrics_auth_failures_total") == len(refused)


def test_an_empty_metrics_token_is_refused() -> None:
    from server.metrics.http import TokenGate

    for token in ("", "   "):
        with pytest.raises(ValueError, match="empty"):
            TokenGate(lambda e, s: [b""], token)


@pytest.mark.slow
def test_metrics_server_with_a_token_over_http() -> None:
    import urllib.error
    import urllib.request

    ex = mx.start_metrics_server(0, "127.0.0.1", token="tok-123", aggregate_sessions=True)
    try:
        url = f"http://127.0.0.1:{ex.port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "bearer tok-123"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
        assert value(body, "hermes_metrics_auth_failures_total") == 1
        assert ex.aggregate
    finally:
        ex.stop()
