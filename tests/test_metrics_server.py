"""The exporter inside a real `hermes serve`: multi-stage pipelines, fork and restore, scraped
directly from /metrics (no Prometheus needed)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import ROOT, Driver, Server, hermes_server, samples, scrape, value  # noqa: E402

MULTISTAGE = ROOT / "examples" / "specs" / "multistage-hetero.yaml"
pytestmark = pytest.mark.slow  # starts `hermes serve`


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with hermes_server(metrics=True) as srv:
        yield srv


@pytest.fixture()
def driver(server: Server) -> Iterator[Driver]:
    d = Driver(server.target)
    yield d
    d.close()


def series(text: str, name: str, session: str, label: str) -> dict[str, float]:
    return {lab[label]: v for n, lab, v in samples(text) if n == name and lab.get("session") == session}


def test_multistage_pipeline_metrics(server: Server, driver: Driver) -> None:
    spec = yaml.safe_load(MULTISTAGE.read_text())
    spec["workload"]["num_requests"] = 40
    sid = driver.create(yaml.safe_dump(spec), session_id="multi")
    driver.run_to_idle(sid)
    state, summary = driver.state(sid), driver.summary(sid)
    text = scrape(server.metrics_url)
    stage_counts = series(text, "hermes_stage_latency_seconds_count", sid, "stage")
    # a series for each stage kind of the spec's pipelines (this one has no kv_retrieval stage)
    assert set(stage_counts) == {"rag", "route", "prefill", "decode", "reasoning", "generic"}
    for group, st in summary["stages"].items():
        assert stage_counts[group] == st["count"], group
    # vLLM series only for LLM clients; every completed request counted once, on the client
    # that generated its tokens
    ttft = series(text, "vllm:time_to_first_token_seconds_count", sid, "client")
    roles = {c.id: c.role for c in state.clients}
    assert ttft and all(roles[c] in ("both", "prefill", "decode") for c in ttft)
    assert sum(ttft.values()) == summary["requests"]["completed"] == 40
    for c in state.clients:
        assert value(text, "hermes_client_requests_completed_total", session=sid, client=c.id) == \
            c.requests_completed_total
        assert value(text, "hermes_client_energy_joules_total", session=sid, client=c.id) == \
            pytest.approx(c.energy_j)
    assert value(text, "hermes_requests_completed_total", session=sid) == 40
    assert value(text, "hermes_simulated_time_seconds", session=sid) == pytest.approx(state.now_ns / 1e9)
    assert value(text, "hermes_events_processed_total", session=sid) > 0
    driver.close_session(sid)


def test_fork_inherits_history_and_restore_rewinds(server: Server, driver: Driver) -> None:
    from hermes.v1 import session_pb2

    sid = driver.create(session_id="parent")
    driver.inject(sid, 6)
    driver.run_to_idle(sid)
    snap = driver.stub.Snapshot(session_pb2.SnapshotRequest(session_id=sid), timeout=30).snapshot_id
    fork = driver.stub.Fork(session_pb2.ForkRequest(session_id=sid, new_session_id="child"), timeout=30)
    child = fork.session.session_id
    text = scrape(server.metrics_url)
    parent_counts = series(text, "vllm:time_to_first_token_seconds_count", sid, "client")
    assert sum(parent_counts.values()) == 6
    assert series(text, "vllm:time_to_first_token_seconds_count", child, "client") == parent_counts

    driver.inject(sid, 4, start_ns=driver.state(sid).now_ns)
    driver.run_to_idle(sid)
    text = scrape(server.metrics_url)
    assert sum(series(text, "vllm:time_to_first_token_seconds_count", sid, "client").values()) == 10
    assert sum(series(text, "vllm:time_to_first_token_seconds_count", child, "client").values()) == 6

    driver.stub.Restore(session_pb2.RestoreRequest(session_id=sid, snapshot_id=snap), timeout=30)
    text = scrape(server.metrics_url)
    assert series(text, "vllm:time_to_first_token_seconds_count", sid, "client") == parent_counts
    assert value(text, "hermes_simulated_time_seconds", session=sid) == pytest.approx(driver.state(sid).now_ns / 1e9)
    before = scrape(server.metrics_url)
    driver.close_session(sid)
    driver.close_session(child)
    # closed sessions keep their final values for the grace time (30 s by default)
    after = scrape(server.metrics_url)
    for s in (sid, child):
        assert series(after, "vllm:time_to_first_token_seconds_count", s, "client") == \
            series(before, "vllm:time_to_first_token_seconds_count", s, "client")
    assert value(after, "hermes_sessions_open") == value(before, "hermes_sessions_open") - 2


def test_stream_commands_are_timed_per_method(server: Server, driver: Driver) -> None:
    from hermes.v1 import session_pb2, simulator_pb2

    def commands() -> Iterator[simulator_pb2.Command]:
        yield simulator_pb2.Command(id=1, get_info=session_pb2.GetInfoRequest())
        yield simulator_pb2.Command(id=2, get_session=session_pb2.GetSessionRequest(session_id="nope"))

    replies = list(driver.stub.Session(commands(), timeout=30))
    assert [r.id for r in replies] == [1, 2]
    text = scrape(server.metrics_url)
    methods = {(lab["method"], lab["code"]) for n, lab, _ in samples(text) if n == "hermes_rpc_duration_seconds_count"}
    assert ("Session.GetInfo", "OK") in methods
    assert ("Session.GetSession", "NOT_FOUND") in methods


def test_aggregate_flag_drops_the_session_label_and_sums_sessions() -> None:
    spec = yaml.safe_load(MULTISTAGE.read_text())
    spec["workload"]["num_requests"] = 10
    with hermes_server(metrics=True, extra=["--metrics-aggregate"]) as srv:
        d = Driver(srv.target)
        try:
            for sid in ("agg-a", "agg-b"):
                d.run_to_idle(d.create(yaml.safe_dump(spec), session_id=sid))
            text = scrape(srv.metrics_url)
        finally:
            d.close()
    hermes = [(n, lab) for n, lab, _ in samples(text) if n.startswith(("hermes_", "vllm:"))]
    assert hermes and not [n for n, lab in hermes if "session" in lab]
    assert value(text, "hermes_requests_completed_total") == 20
