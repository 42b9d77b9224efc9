"""`Simulation.abort`: a request ends at once wherever it is, and frees what it holds.

The central test walks one request of the multi-stage spec (RAG on task clients, a route
stage, prefill and decode on different nodes with the KV moved over the network, reasoning
branches, a generic guard stage) event by event, forks the world at every event, aborts the
request in the fork and runs the fork to its end: nothing of it may remain anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim_engine import RequestInput, Simulation, load_spec
from sim_engine.kernel import Kernel
from sim_engine.network import Network
from sim_engine.output import write_requests_csv
from sim_engine.request import STATUS_ABORTED, STATUS_COMPLETED

ROOT = Path(__file__).resolve().parent.parent
MULTI = str(ROOT / "examples/specs/multistage-hetero.yaml")


def where(sim: Simulation, rid: str) -> set[str]:
    """The places a live request is in right now."""
    req = sim._live[rid]
    out = set()
    if any(r is req for _, r in sim.pending.values()):
        out.add("decision")
    if req.transfer and req.transfer in sim.network._transfers:
        out.add("transfer")
    c = req.client
    if c is not None:
        if req in c.waiting:
            out.add("queue")
        if c.spec.is_llm and (req in c.prefilling or req.live or any(x.live for x in req.children or ())):
            out.add("llm")
        if c.spec.is_llm and req in c.in_frontend:
            out.add("frontend")
        if not c.spec.is_llm and req in c.running:
            out.add("task")
    return out


def assert_nothing_left(sim: Simulation) -> None:
    assert sim.is_done() and not sim.in_flight() and sim.network.active() == 0
    for c in sim.clients:
        assert c.is_idle() and c.load() == 0 and c.kv_used_now(sim.now_ns) == 0
        if c.spec.is_llm:
            assert c.used_blocks == 0 and c.committed == 0 and not c.sharing


def test_abort_anywhere_in_a_multistage_pipeline_frees_everything():
    spec = load_spec(MULTI, {"workload.arrival": {"process": "none"}})
    sim = Simulation(spec, record_events=True)
    sim.inject([RequestInput(0, 500, 40, request_id="r")])
    places: set[str] = set()
    forks = 0
    while "r" in sim.in_flight():
        here = where(sim, "r")
        places |= here
        fork = sim.fork()
        fork.events.clear()
        assert fork.abort("r") and not fork.abort("r")
        assert fork.state().aborted == 1 and fork.state().in_flight == 0
        events = fork.advance().events
        assert [e.kind for e in events if e.request_id == "r"] == ["aborted"], here
        assert_nothing_left(fork)
        rec = fork.request_records()
        assert rec["status"].tolist() == [STATUS_ABORTED] and rec["output_tokens"][0] <= 40 + 80
        forks += 1
        sim.advance(max_events=1)
    assert sim.completed == 1 and forks > 10
    # every kind of place was visited (the frontend, queue and running places of several clients)
    assert {"transfer", "queue", "llm", "task", "frontend"} <= places, places
    assert not sim.abort("r")  # completed: too late


def test_abort_before_arrival_and_of_a_pending_decision():
    spec = load_spec("hetero-demo", {"workload.arrival": {"process": "none"}})  # router: external
    sim = Simulation(spec, record_events=True)
    sim.inject([RequestInput(1_000_000, 100, 10, request_id="later"), RequestInput(0, 100, 10, request_id="held"),
                RequestInput(0, 100, 10, request_id="asked")])
    sim.advance()
    (d,) = sim.pending_decisions()
    assert d.request_id == "held"
    sim.hold(d.decision_id)  # set aside while an outside router thinks: the world runs on
    sim.advance()
    assert [d.request_id for d in sim.pending_decisions()] == ["asked"]
    assert sim.abort("asked") and sim.pending_decisions() == []
    assert sim.abort("held") and sim.held == {}
    assert sim.abort("later")
    res = sim.advance()
    assert {e.kind for e in res.events} == {"aborted"} and sim.is_done()
    assert sim.summary()["requests"] | {"drop_reasons": None} == {
        "injected": 3, "completed": 0, "dropped": 0, "aborted": 3, "in_flight": 0, "drop_reasons": None,
        "preemptions": 0}
    assert not sim.abort("unknown") and not sim.abort(7)  # type: ignore[arg-type]


def test_aborted_rows_in_the_requests_csv(tmp_path):
    spec = load_spec("hetero-poisson", {"workload.arrival": {"process": "none"}})
    sim = Simulation(spec)
    sim.inject([RequestInput(0, 100, 3000, request_id="a"), RequestInput(0, 100, 5, request_id="b")])
    sim.advance(until_ns=300_000_000)
    assert sim.abort("a")
    sim.advance()
    rows = (tmp_path / "r.csv")
    write_requests_csv(sim, rows)
    lines = rows.read_text().splitlines()[1:]
    assert sorted(line.split(",")[1] for line in lines) == ["aborted", "completed"]
    assert sorted(sim.request_records()["status"].tolist()) == [STATUS_COMPLETED, STATUS_ABORTED]


def test_closed_loop_user_sends_the_next_request_after_an_abort():
    spec = load_spec("hetero-poisson", {"workload.arrival": {"process": "closed_loop", "users": 1},
                                        "workload.num_requests": 3})
    sim = Simulation(spec)
    sim.advance(until_ns=50_000_000)
    assert sim.in_flight() == ["#0"] and sim.abort("#0")
    sim.advance()
    assert (sim.aborted, sim.completed, sim.injected) == (1, 2, 3)


def test_network_cancel_frees_bandwidth_and_never_calls_back():
    k = Kernel()
    net = Network(k)
    net.add_link("l", 1.0, 0.0)  # 1 byte per ns
    done = []

    def arrived(name: str) -> None:
        done.append((name, k.now))

    a = net.start(["l"], 1000, arrived, "a")
    net.start(["l"], 1000, arrived, "b")
    k.run_until(500, None, lambda: False)  # both half way at 0.5 byte/ns: 250 bytes each
    k.move_clock(500)
    assert net.cancel(a) and not net.cancel(a)
    k.run_until(None, None, lambda: False)
    assert done == [("b", 1250)]  # b's last 750 bytes at the full rate (not 2000 as when shared)
    stats = net.link_stats(k.now)["l"]
    assert stats["bytes_moved"] == 1250 and stats["active"] == 0
    net.add_link("slow", 1.0, 100.0)  # 100 us latency: cancelled before its data phase
    c = net.start(["slow"], 10, arrived, "c")
    assert net.cancel(c)
    k.run_until(None, None, lambda: False)
    assert done == [("b", 1250)] and net.active() == 0


@pytest.mark.parametrize("batching", ["continuous", "chunked"])
def test_abort_mid_run_matches_stepping(batching, monkeypatch):
    """A decode run cut by an abort gives the same records as one decode step per event."""
    import sim_engine.llm_client as llm_client

    def run() -> dict:
        spec = load_spec("hetero-poisson", {"workload.arrival": {"process": "none"},
                                            "clients[0].scheduler.batching": batching})
        sim = Simulation(spec)
        sim.inject([RequestInput(0, 300, 800, request_id=f"q{i}", client_id=sim.clients[0].id,
                                 pipeline=None) for i in range(4)])
        for t, rid in ((120_000_000, "q1"), (260_000_000, "q3")):
            sim.advance(until_ns=t)
            assert sim.abort(rid)
        sim.advance()
        r = sim.request_records()
        return {k: v.tolist() for k, v in r.items()}

    closed = run()
    monkeypatch.setattr(llm_client, "MAX_RUN_STEPS", 1)
    assert run() == closed
    assert closed["status"].count(STATUS_ABORTED) == 2


def test_abort_withdraws_a_batch_decision_that_shows_the_request():
    spec = load_spec("hetero-poisson", {"workload.arrival": {"process": "none"},
                                        "clients[0].scheduler.batching": "external"})
    sim = Simulation(spec)
    cid = sim.clients[0].id
    sim.inject([RequestInput(0, 100, 10, request_id=r, client_id=cid) for r in ("a", "b")])
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    assert [v.request_id for v in d.waiting] == ["a", "b"]
    assert sim.abort("a") and sim.pending_batch_decisions() == []
    sim.advance()
    (again,) = sim.pending_batch_decisions()  # asked again, without it
    assert again.decision_id != d.decision_id and [v.request_id for v in again.waiting] == ["b"]
