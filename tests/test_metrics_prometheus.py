"""Integration: the server's exporter scraped by a real Prometheus server.

The gRPC server runs in this process with an AdvanceGate observer (tests/metrics_support.py),
so "during an Advance" is a held call, not a sleep racing the clock; `hermes serve` itself is
covered by test_metrics_server.py. Needs the `prometheus` binary (Debian package
`prometheus`, installed by scripts/install_test_deps.sh); skipped without it unless the tools
are required (CI, or scripts/test.sh run as root).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import (  # noqa: E402
    Driver,
    InProcessServer,
    Prometheus,
    by_label,
    in_process_server,
    per_client,
    prometheus,
    require_tool,
    samples,
    scrape,
    value,
)

pytestmark = pytest.mark.slow
GRACE_S = 3.0  # closed sessions' series stay this long: three of Prometheus' 1 s scrape intervals


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[InProcessServer, Prometheus]]:
    require_tool("prometheus", "the real Prometheus server for this integration test")
    with in_process_server(closed_grace_s=GRACE_S) as server, \
            prometheus([f"127.0.0.1:{server.metrics_port}"]) as prom:
        prom.wait_for('up{job="hermes"}', lambda r: r and r[0]["value"][1] == "1")
        yield server, prom


@pytest.fixture()
def driver(stack: tuple[InProcessServer, Prometheus]) -> Iterator[Driver]:
    d = Driver(stack[0].target)
    yield d
    d.close()


def counts_match(expected: dict[str, float]):
    return lambda result: by_label(result, "client") == expected


def test_prometheus_sees_what_the_session_reports(stack: tuple[InProcessServer, Prometheus], driver: Driver) -> None:
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


def test_two_sessions_do_not_mix(stack: tuple[InProcessServer, Prometheus], driver: Driver) -> None:
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


def test_a_session_closed_between_scrapes_is_still_seen(stack: tuple[InProcessServer, Prometheus],
                                                        driver: Driver) -> None:
    server, prom = stack
    sid = driver.create(session_id="prom-short")
    keep = driver.create(session_id="prom-kept")
    for s in (sid, keep):
        driver.inject(s, 5)
        driver.run_to_idle(s)
    driver.close_session(sid)  # most likely before Prometheus' next scrape
    final = [x for x in samples(scrape(server.metrics_url)) if x[1].get("session") == sid]
    assert value(scrape(server.metrics_url), "hermes_requests_completed_total", session=sid) == 5
    # Prometheus scrapes the final values within the grace time ...
    prom.wait_for(f'hermes_requests_completed_total{{session="{sid}"}}', lambda r: r and r[0]["value"][1] == "5",
                  timeout=GRACE_S)
    assert len(final) > 10
    # ... then the series leave /metrics and Prometheus marks them stale
    prom.wait_for(f'count({{session="{sid}"}})', lambda r: r == [], timeout=GRACE_S + 10)
    assert not [x for x in samples(scrape(server.metrics_url)) if x[1].get("session") == sid]
    prom.wait_for(f'count({{session="{keep}"}})', lambda r: r and float(r[0]["value"][1]) > 10)
    driver.close_session(keep)


def test_scrape_during_a_held_advance_returns_at_once(stack: tuple[InProcessServer, Prometheus],
                                                      driver: Driver) -> None:
    server, prom = stack
    sid = driver.create(session_id="prom-held")
    driver.inject(sid, 20)
    server.gate.hold(sid)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(reply=driver.advance(sid, timeout=120)))
    worker.start()
    try:
        assert server.gate.wait_entered(sid), "the Advance never reached the gate"
        # the Advance is in flight and holds the session's lock until released
        for _ in range(3):
            t0 = time.monotonic()
            text = scrape(server.metrics_url, timeout=10)
            assert time.monotonic() - t0 < 1.0
            assert worker.is_alive()
            # the exporter still shows the state before the Advance: it never waited for it
            assert value(text, "hermes_requests_completed_total", session=sid) == 0
        prom.wait_for('up{job="hermes"}', lambda r: r and r[0]["value"][1] == "1")
    finally:
        server.gate.release(sid)
    worker.join(120)
    assert not worker.is_alive() and "reply" in result
    text = scrape(server.metrics_url)
    assert value(text, "hermes_requests_completed_total", session=sid) == driver.state(sid).completed > 0
    assert float(prom.query('max_over_time(scrape_duration_seconds{job="hermes"}[1m])')[0]["value"][1]) < 1.0
    driver.close_session(sid)
