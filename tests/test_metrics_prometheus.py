"""Integration: a real `hermes serve --metrics-port` process scraped by a real Prometheus server.

Needs the `prometheus` binary (Debian package `prometheus`, installed by
scripts/install_test_deps.sh); skipped without it unless CI is set.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_metrics_support import (  # noqa: E402
    SPEC_YAML,
    Driver,
    Prometheus,
    Server,
    by_label,
    hermes_server,
    per_client,
    prometheus,
    require_tool,
    samples,
    scrape,
)

# a session whose single Advance takes seconds of wall time (no events delivered)
BIG_SPEC_YAML = SPEC_YAML.replace("name: metrics-test", "name: metrics-long-advance")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Server, Prometheus]]:
    require_tool("prometheus", "the real Prometheus server for this integration test")
    with hermes_server(metrics=True) as server, prometheus([f"127.0.0.1:{server.metrics_port}"]) as prom:
        prom.wait_for('up{job="hermes"}', lambda r: r and r[0]["value"][1] == "1")
        yield server, prom


@pytest.fixture()
def driver(stack: tuple[Server, Prometheus]) -> Iterator[Driver]:
    d = Driver(stack[0].target)
    yield d
    d.close()


def counts_match(expected: dict[str, float]):
    return lambda result: by_label(result, "client") == expected


def test_prometheus_sees_what_the_session_reports(stack: tuple[Server, Prometheus], driver: Driver) -> None:
    from hermes.v1 import common_pb2

    _, prom = stack
    sid = driver.create(session_id="prom-main")
    driver.inject(sid, 60, gap_ns=5_000_000)
    events = []
    # part way: some requests run, so the gauges are not trivially zero
    r = driver.advance(sid, until_ns=250_000_000)
    events += [e for e in r.events if e.kind == common_pb2.EVENT_KIND_COMPLETED]
    mid = driver.state(sid)
    running = {c.id: float(c.num_running) for c in mid.clients}
    assert sum(running.values()) > 0
    prom.wait_for(f'vllm:num_requests_running{{session="{sid}"}}', counts_match(running))
    waiting = {c.id: float(c.num_waiting) for c in mid.clients}
    prom.wait_for(f'vllm:num_requests_waiting{{session="{sid}"}}', counts_match(waiting))

    events += driver.run_to_idle(sid)
    state = driver.state(sid)
    completed = {c.id: float(c.requests_completed_total) for c in state.clients}
    assert sum(completed.values()) == 60
    from_events = per_client(events)
    assert {k: float(n) for k, (n, _) in from_events.items()} == {k: v for k, v in completed.items() if v}

    prom.wait_for(f'vllm:time_to_first_token_seconds_count{{session="{sid}"}}', counts_match(completed))
    sums = by_label(prom.query(f'vllm:time_to_first_token_seconds_sum{{session="{sid}"}}'), "client")
    for client, (_, ttft_sum) in from_events.items():
        assert sums[client] == pytest.approx(ttft_sum, rel=1e-9)
    running = by_label(prom.query(f'vllm:num_requests_running{{session="{sid}"}}'), "client")
    assert running == {c.id: float(c.num_running) for c in state.clients}
    # the session's own summary agrees on the totals
    summary = driver.summary(sid)
    total = prom.query(f'sum(vllm:time_to_first_token_seconds_sum{{session="{sid}"}})')
    ttft = summary["latency_s"]["ttft"]
    assert float(total[0]["value"][1]) == pytest.approx(ttft["mean"] * summary["requests"]["completed"], rel=1e-9)
    success = prom.query(f'sum(vllm:request_success_total{{session="{sid}"}})')
    assert float(success[0]["value"][1]) == summary["requests"]["completed"]
    gen = by_label(prom.query(f'vllm:generation_tokens_total{{session="{sid}"}}'), "client")
    assert gen == {c.id: float(c.generation_tokens_total) for c in state.clients}
    clock = prom.query(f'hermes_simulated_time_seconds{{session="{sid}"}}')
    assert float(clock[0]["value"][1]) == pytest.approx(state.now_ns / 1e9)
    # server health in wall time
    prom.wait_for('sum(hermes_rpc_duration_seconds_count{method="Advance", code="OK"})',
                  lambda res: res and float(res[0]["value"][1]) >= 2)
    driver.close_session(sid)


def test_two_sessions_do_not_mix(stack: tuple[Server, Prometheus], driver: Driver) -> None:
    _, prom = stack
    a = driver.create(session_id="prom-a")
    b = driver.create(session_id="prom-b")
    driver.inject(a, 7)
    driver.inject(b, 19, prompt=900, output=20)
    ev_a, ev_b = driver.run_to_idle(a), driver.run_to_idle(b)
    for sid, events in ((a, ev_a), (b, ev_b)):
        expected = {k: float(n) for k, (n, _) in per_client(events).items()}
        got = prom.wait_for(f'vllm:time_to_first_token_seconds_count{{session="{sid}"}} > 0',
                            counts_match(expected))
        assert {r["metric"]["session"] for r in got} == {sid}
    totals = by_label(prom.query('sum by (session) (vllm:request_success_total{session=~"prom-a|prom-b"})'),
                      "session")
    assert totals == {a: 7.0, b: 19.0}
    prompt = by_label(prom.query('sum by (session) (vllm:prompt_tokens_total{session=~"prom-a|prom-b"})'), "session")
    assert prompt[b] > prompt[a]
    driver.close_session(a)
    driver.close_session(b)


def test_closing_a_session_removes_its_series(stack: tuple[Server, Prometheus], driver: Driver) -> None:
    server, prom = stack
    sid = driver.create(session_id="prom-closed")
    keep = driver.create(session_id="prom-kept")
    for s in (sid, keep):
        driver.inject(s, 5)
        driver.run_to_idle(s)
    prom.wait_for(f'count({{session="{sid}"}})', lambda r: r and float(r[0]["value"][1]) > 10)
    driver.close_session(sid)
    assert not [x for x in samples(scrape(server.metrics_url)) if x[1].get("session") == sid]
    # Prometheus marks the vanished series stale at its next scrape
    prom.wait_for(f'count({{session="{sid}"}})', lambda r: r == [])
    prom.wait_for(f'count({{session="{keep}"}})', lambda r: r and float(r[0]["value"][1]) > 10)
    driver.close_session(keep)


def test_scrape_during_a_long_advance_returns_promptly(stack: tuple[Server, Prometheus], driver: Driver) -> None:
    server, prom = stack
    from hermes.v1 import common_pb2, session_pb2

    req = session_pb2.CreateSessionRequest(spec=session_pb2.SpecSource(yaml=BIG_SPEC_YAML),
                                           session_id="prom-long", event_kinds=[common_pb2.EVENT_KIND_WAKEUP])
    sid = driver.stub.CreateSession(req, timeout=30).session.session_id
    for chunk in range(20):  # ~5 s of Advance on a 2-core machine
        driver.inject(sid, 5000, prompt=400, output=200, gap_ns=200_000, start_ns=chunk * 5000 * 200_000)
    result: dict[str, object] = {}

    def advance() -> None:
        t0 = time.monotonic()
        result["reply"] = driver.advance(sid, timeout=600)
        result["wall"] = time.monotonic() - t0

    worker = threading.Thread(target=advance)
    worker.start()
    time.sleep(0.5)
    scrape_times = []  # scrapes that began and ended while the Advance was running
    while worker.is_alive() and len(scrape_times) < 5:
        t0 = time.monotonic()
        text = scrape(server.metrics_url, timeout=10)
        if worker.is_alive():
            scrape_times.append(time.monotonic() - t0)
        assert "hermes_sessions_open" in text
        time.sleep(0.2)
    worker.join(600)
    assert len(scrape_times) >= 2, f"the Advance ({result.get('wall')}s) left too little time to scrape during it"
    assert max(scrape_times) < 1.0, scrape_times
    ok = prom.query('max_over_time(scrape_duration_seconds{job="hermes"}[1m])')
    assert float(ok[0]["value"][1]) < 1.0
    assert prom.query('min_over_time(up{job="hermes"}[1m])')[0]["value"][1] == "1"
    driver.close_session(sid)
