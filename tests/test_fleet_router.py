"""An external router for the fleet (`hermes fleet --router-port`): SDK routers answer the routing
decisions of the wall-clock simulation; held decisions stop only their request; the router's
latency is simulated time; no router or no answer in time falls back to round robin (counted)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time

import pytest
from test_fleet import MODEL, ROOT, FakeClock, get, metric, post

from client_sdk import Client, HermesError
from client_sdk.scheduler import ExternalScheduler, LeastKvScheduler
from hermes.v1 import common_pb2, control_pb2
from server.cli.fleet import read_start_lines
from server.errors import ApiError
from server.fleet.app import fleet_spec
from server.fleet.pacer import NS, Pacer
from server.fleet.router import RouterDesk, RouterService
from sim_engine import RequestInput, Simulation
from sim_engine.errors import NotFoundError

MULTI = str(ROOT / "examples/specs/multistage-hetero.yaml")
CLIENTS = ("h100-0", "a100-0", "l40s-0")  # hetero-demo's LLM clients (its router is external)


def routed(sim_events, rid: str) -> list[tuple[int, str]]:
    return [(e.time_ns, e.client_id) for e in sim_events if e.kind == "routed" and e.request_id == rid]


# ---------------------------------------------------------------- engine: held decisions


def test_a_held_decision_lets_the_simulation_run_and_is_answered_at_the_time_of_the_answer():
    sim = Simulation(fleet_spec("hetero-demo"), record_events=True)
    sim.inject([RequestInput(0, 100, 4, request_id="free"),
                RequestInput(0, 100, 4, request_id="pinned", client_id="h100-0", pipeline="_fleet_direct")])
    res = sim.advance()
    (d,) = sim.pending_decisions()
    assert res.reason.name == "DECISION_NEEDED" and d.request_id == "free"
    sim.hold(d.decision_id)
    assert sim.pending_decisions() == [] and sim.state().pending_decisions == 1
    sim.advance(until_ns=2 * NS)  # the pinned request runs to its end while "free" waits
    assert sim.completed == 1 and not sim.is_done()
    with pytest.raises(NotFoundError):
        sim.hold(d.decision_id)  # held already: no longer pending
    sim.decide(d.decision_id, "route", "l40s-0")
    events = sim.advance().events
    assert routed(events, "free") == [(2 * NS, "l40s-0")] and sim.completed == 2 and sim.is_done()
    with pytest.raises(NotFoundError):
        sim.decide(d.decision_id, "route", "l40s-0")


# ---------------------------------------------------------------- the desk, on a fake clock


def _desk(timeout_s: float = 0.1, scale: float = 1.0, spec: str = "hetero-demo"):
    sim = Simulation(fleet_spec(spec, {"router.policy": "external"}), record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=scale, clock=clock)
    desk = RouterDesk(pacer, timeout_s)
    pacer.background = desk
    return sim, clock, pacer, desk


def _run(pacer, clock, calls, dt: float = 0.002, steps: int = 20000) -> list:
    events = []
    orig = pacer._on_event

    def spy(ev):
        events.append(ev)
        orig(ev)

    pacer._on_event = spy
    for _ in range(steps):
        if all(c.finished for c in calls):
            break
        clock.t += dt
        pacer.step(clock.t)
    pacer._on_event = orig
    return events


def test_an_answer_routes_at_the_simulated_time_it_arrives_while_the_rest_runs_on():
    sim, clock, pacer, desk = _desk(timeout_s=1.0, scale=2.0)
    desk.seen_wall = clock()  # a router is connected
    gw = pacer.submit(None, MODEL, (50,), [4], 1)
    pinned = pacer.submit("h100-0", MODEL, (50,), [4], 1)
    events = _run(pacer, clock, [pinned])
    assert pinned.finished and not gw.finished  # the held decision stopped only its own request
    (did,) = desk.open
    clock.t += 0.030
    answer_ns = pacer.sim_now_target()
    desk.decide([(did, "route", "a100-0", None)])
    events += _run(pacer, clock, [gw], dt=0.001)
    assert gw.finished and gw.jobs[0].client_id == "a100-0"
    assert routed(events, gw.jobs[0].rid) == [(answer_ns, "a100-0")]  # the router's 30 ms (x2) is simulated time
    assert (desk.decided, desk.fallbacks, desk.late) == (1, 0, 0) and not desk.open
    service = RouterService(desk, "hetero-demo", "external")
    again = service._answers(_answers(_a(str(did), "l40s-0")))  # a second router answers it too: no error,
    desk.decide(again)  # ignored and counted
    assert desk.late == 1 and gw.jobs[0].client_id == "a100-0"


def test_no_router_connected_falls_back_at_once_and_counts_it():
    sim, clock, pacer, desk = _desk()
    calls = [pacer.submit(None, MODEL, (50,), [4], 1) for _ in range(3)]
    t0 = pacer.sim_now_target()
    events = _run(pacer, clock, calls)
    assert all(c.finished for c in calls) and sim.completed == 3
    assert sorted(j.client_id for c in calls for j in c.jobs) == sorted(CLIENTS)
    assert all(t < t0 + 0.005 * NS for c in calls for t, _ in routed(events, c.jobs[0].rid))
    assert (desk.decided, desk.fallbacks) == (0, 3)


def test_an_unanswered_decision_falls_back_at_its_deadline_and_a_late_answer_is_ignored():
    sim, clock, pacer, desk = _desk(timeout_s=0.1, scale=3.0)
    desk.polling = 1  # a router waits in Advance but never answers
    call = pacer.submit(None, MODEL, (50,), [4], 1)
    pacer.step(clock.t)
    (did,) = desk.open
    deadline = desk.open[did].deadline_ns
    assert deadline == sim.now_ns + int(0.1 * 3.0 * NS)
    events = _run(pacer, clock, [call])
    assert call.finished and routed(events, call.jobs[0].rid)[0][0] == deadline
    assert (desk.decided, desk.fallbacks) == (0, 1)
    desk.decide([(did, "route", "h100-0", None)])  # too late: accepted, ignored, counted
    assert desk.late == 1 and sim.completed == 1
    text = desk.exposition()
    assert "hermes_fleet_router_fallbacks_total 1\n" in text and "hermes_fleet_router_late_answers_total 1\n" in text


def test_a_route_stage_is_answered_with_a_model_name():
    sim, clock, pacer, desk = _desk(timeout_s=5.0, spec=MULTI)
    desk.seen_wall = clock()
    call = pacer.submit(None, MODEL, (50,), [4], 1)
    kinds = []
    for _ in range(200000):
        if call.finished:
            break
        clock.t += 0.001
        desk.seen_wall = clock.t
        pacer.step(clock.t)
        for did, h in list(desk.open.items()):
            kinds.append(h.decision.stage_kind)
            desk.decide([(did, "route", h.decision.candidates[-1], None)])
    assert call.finished and not call.jobs[0].error
    assert {"embed", "search", "rerank", "route", "prefill", "decode"} <= set(kinds)
    assert desk.fallbacks == 0 and desk.decided == len(kinds)


# ---------------------------------------------------------------- hostile answers (checked before any is queued)


def _answers(*answers, batch: bool = False) -> control_pb2.DecideRequest:
    req = control_pb2.DecideRequest(session_id="fleet", answers=list(answers))
    if batch:
        req.batch_answers.add(decision_id="1")
    return req


ROUTE, DEFER = common_pb2.DECISION_ACTION_ROUTE, common_pb2.DECISION_ACTION_DEFER


def _a(did: str = "", client: str = "", action: int = ROUTE, retry: int = 0) -> control_pb2.DecisionAnswer:
    return control_pb2.DecisionAnswer(decision_id=did, action=action, client_id=client, retry_after_ns=retry)


@pytest.mark.parametrize(("make", "code", "field"), [
    (lambda d: _answers(), "INVALID_ARGUMENT", "answers"),
    (lambda d: _answers(_a(d, "l40s-0"), batch=True), "INVALID_ARGUMENT", "batch_answers"),
    (lambda d: _answers(_a("999", "l40s-0")), "NOT_FOUND", "answers[0].decision_id"),
    (lambda d: _answers(_a("0x1", "l40s-0")), "NOT_FOUND", "answers[0].decision_id"),
    (lambda d: _answers(_a("", "l40s-0")), "INVALID_ARGUMENT", "answers[0].decision_id"),
    (lambda d: _answers(_a(d, "nope")), "NOT_FOUND", "answers[0].client_id"),
    (lambda d: _answers(_a(d, "")), "INVALID_ARGUMENT", "answers[0].client_id"),
    (lambda d: _answers(_a(d, "l40s-0", action=99)), "INVALID_ARGUMENT", "answers[0].action"),
    (lambda d: _answers(_a(d, "l40s-0", action=0)), "INVALID_ARGUMENT", "answers[0].action"),
    (lambda d: _answers(_a(d, action=DEFER)), "INVALID_ARGUMENT", "answers[0].retry_after_ns"),
    (lambda d: _answers(_a(d, action=DEFER, retry=2**63 - 1)), "OUT_OF_RANGE", "answers[0].retry_after_ns"),
    (lambda d: _answers(_a(d, "l40s-0", retry=5)), "INVALID_ARGUMENT", "answers[0].retry_after_ns"),
    (lambda d: _answers(_a(d, "l40s-0"), _a(d, "h100-0")), "INVALID_ARGUMENT", "answers.decision_id[1]"),
    (lambda d: _answers(_a(d, "l40s-0"), _a("77", "h100-0")), "NOT_FOUND", "answers[1].decision_id"),
])
def test_a_bad_answer_names_the_field_and_changes_nothing(make, code, field):
    sim, clock, pacer, desk = _desk(timeout_s=5.0)
    desk.seen_wall = clock()
    pacer.submit(None, MODEL, (50,), [4], 1)
    pacer.step(clock.t)
    (did,) = desk.open
    service = RouterService(desk, "hetero-demo", "external")
    with pytest.raises(ApiError) as e:
        service._answers(make(str(did)))
    assert e.value.code.name == code and e.value.message.startswith(field + ":"), e.value.message
    assert list(desk.open) == [did] and desk._answers == [] and did in sim.held


def test_a_candidate_of_another_stage_is_not_a_candidate_of_this_one():
    sim, clock, pacer, desk = _desk(timeout_s=5.0, spec=MULTI)
    desk.seen_wall = clock()
    pacer.submit(None, MODEL, (50,), [4], 1)
    pacer.step(clock.t)
    (did,) = desk.open
    assert desk.open[did].decision.stage_kind == "embed"
    with pytest.raises(ApiError) as e:
        RouterService(desk, "m", "external")._answers(_answers(_a(str(did), "big")))  # an LLM client
    assert e.value.code.name == "INVALID_ARGUMENT" and "answers[0].client_id" in e.value.message
    assert "not a candidate" in e.value.message and list(desk.open) == [did]


# ---------------------------------------------------------------- a real `hermes fleet` process


class ToOne(ExternalScheduler):
    """Every decision to one named client or model (the first candidate when none is one); it also
    collects the ids of the completions the Advance replies carry (an unchanged SDK hook)."""

    needs_state = False

    def __init__(self, *targets: str) -> None:
        self.targets = targets
        self.completed: list[str] = []

    def on_events(self, events) -> None:
        self.completed += [e.request_id for e in events if e.kind == common_pb2.EVENT_KIND_COMPLETED]

    def route(self, decision, state):
        return next((t for t in self.targets if t in decision.candidates), decision.candidates[0])


class Silent(ExternalScheduler):
    """Connected (it polls Advance) but never answers."""

    needs_state = False

    def _decide(self, session, reply) -> int:
        return 0


def _start_fleet(*extra: str, spec: str = "hetero-demo") -> tuple[subprocess.Popen, dict[str, str], str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "fleet", spec, "--base-port", "0",
                             "--gateway-port", "0", "--router-port", "0", "--time-scale", "5",
                             "--log-level", "error", *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    start = read_start_lines(proc.stdout)
    assert start.instances and start.gateway and start.router, start
    return proc, start.instances, start.gateway, start.router


def _drive(scheduler: ExternalScheduler, target: str, stream: bool = False) -> tuple[Client, threading.Thread, list]:
    client = Client(target, timeout=30)
    session = client.attach("fleet", stream=stream)
    errors: list = []

    def run() -> None:
        try:
            scheduler.run(session)
        except HermesError as e:  # the fleet stopped under it
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return client, thread, errors


def _openai_calls(gateway: str, count: int) -> list[int]:
    openai = pytest.importorskip("openai")

    async def one(client, i: int) -> int:
        if i % 2:
            stream = await client.chat.completions.create(model=MODEL, max_tokens=5, stream=True,
                                                          messages=[{"role": "user", "content": f"q{i}"}])
            return sum([(c.delta.content or "").count(" tok") async for chunk in stream for c in chunk.choices])
        r = await client.completions.create(model=MODEL, prompt=f"question {i} " * 5, max_tokens=5)
        return r.usage.completion_tokens

    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="none", max_retries=0, timeout=60)
        try:
            return list(await asyncio.gather(*(one(client, i) for i in range(count))))
        finally:
            await client.close()

    return asyncio.run(run())


def _successes(url: str) -> float:
    status, text = get(url + "/metrics")
    assert status == 200
    return metric(text, "vllm:request_success_total")


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_an_sdk_router_sends_every_gateway_call_to_one_named_client(stream):
    proc, instances, gateway, router = _start_fleet()
    assert instances.keys() == set(CLIENTS)
    try:
        to_one = ToOne("l40s-0")
        client, thread, errors = _drive(to_one, router, stream)
        assert _openai_calls(gateway, 8) == [5] * 8
        assert {c: _successes(u) for c, u in instances.items()} == {"h100-0": 0, "a100-0": 0, "l40s-0": 8}
        deadline = time.monotonic() + 10  # the router's next Advance reply (a poll of at most 1 s) carries them
        while len(to_one.completed) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(set(to_one.completed)) == 8
        _, text = get(gateway + "/metrics")
        assert metric(text, "hermes_fleet_router_decisions_total") == 8
        assert metric(text, "hermes_fleet_router_fallbacks_total") == 0
        # an unchanged SDK class that reads the cluster state (GetState) runs too
        client2, thread2, errors2 = _drive(LeastKvScheduler(), router)
        assert _openai_calls(gateway, 4) == [5] * 4
        assert not errors and not errors2
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.slow
def test_a_router_that_never_answers_costs_the_timeout_and_every_call_completes():
    proc, instances, gateway, router = _start_fleet("--router-timeout-ms", "150")
    try:
        client, thread, errors = _drive(Silent(), router)
        assert _openai_calls(gateway, 6) == [5] * 6
        _, text = get(gateway + "/metrics")
        assert metric(text, "hermes_fleet_router_fallbacks_total") == 6
        assert metric(text, "hermes_fleet_router_decisions_total") == 0
        assert sum(_successes(u) for u in instances.values()) == 6
        assert client.attach("fleet").decisions() == []  # every held decision fell back
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_engine_events_are_kept_for_a_connected_router_only_and_bounded(monkeypatch):
    import server.fleet.router as router_mod

    sim, clock, pacer, desk = _desk()
    pacer.on_events = desk.note_events
    pinned = pacer.submit("h100-0", MODEL, (50,), [4], 1)
    _run(pacer, clock, [pinned])
    assert pinned.finished and not desk.events  # no router connected: nothing kept
    desk.seen_wall = clock()
    call = pacer.submit("h100-0", MODEL, (50,), [4], 1)
    _run(pacer, clock, [call])
    kinds = [e.kind for e in desk.take_events(100)]
    assert kinds[0] == "arrival" and "first_token" in kinds and kinds[-1] == "completed"
    assert not desk.events  # taken
    monkeypatch.setattr(router_mod, "EVENT_BUFFER", 2)
    desk.seen_wall = clock()
    desk.note_events(["a", "b", "c", "d", "e"])
    assert list(desk.events) == ["d", "e"] and desk.events_dropped == 3
    assert "hermes_fleet_router_events_dropped_total 3" in desk.exposition()


@pytest.mark.slow
def test_the_router_listener_over_tls_takes_a_tls_client_and_refuses_plaintext(tmp_path):
    from server_fixtures import self_signed

    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path, "fleet-router")
    token = tmp_path / "token"
    token.write_text("router-secret\n")
    proc, _, _, router = _start_fleet("--router-tls-cert", str(cert), "--router-tls-key", str(key),
                                      "--router-token-file", str(token))
    try:
        with Client(router, token="router-secret", tls_ca=cert, timeout=10) as c:
            assert c.attach("fleet").get().session_id == "fleet"
        with Client(router, token="router-secret", timeout=5) as plain, pytest.raises(HermesError) as e:
            plain.attach("fleet").get()
        assert e.value.code.name == "UNAVAILABLE"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


@pytest.mark.slow
def test_router_flags_are_checked():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", "fleet", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    bad = run("hetero-demo", "--router-port", "70000")
    assert bad.returncode == 2 and "--router-port" in bad.stderr
    bad = run("hetero-demo", "--router-port", "0", "--router-timeout-ms", "0")
    assert bad.returncode == 2 and "--router-timeout-ms" in bad.stderr
    bad = run("hetero-poisson", "--router-port", "0", "--base-port", "0")  # least_loaded
    assert bad.returncode == 2 and "router.policy" in bad.stderr
    bad = run("hetero-demo", "--router-port", "0", "--router-token-file", "/nonexistent/token")
    assert bad.returncode == 2 and "--router-token-file" in bad.stderr
    bad = run("hetero-demo", "--router-port", "0", "--router-tls-cert", "/nonexistent/cert")
    assert bad.returncode == 2 and "--router-tls-cert and --router-tls-key go together" in bad.stderr
    bad = run("hetero-demo", "--router-port", "0", "--router-tls-cert", "/nonexistent/c", "--router-tls-key", "/x/k")
    assert bad.returncode == 2 and "--router-tls-cert: no file /nonexistent/c" in bad.stderr



@pytest.mark.slow
def test_the_router_benchmark_runs_and_prints_its_ratio_last():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/fleet_router.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"external_router_latency_ratio=[\d.]+", lines[-1]), lines[-3:]
    assert "'hermes_fleet_router_fallbacks_total': 0.0" in lines[1]  # the SDK router answered every decision


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_advance_waits_on_the_wall_clock_as_a_call_or_a_stream_command(stream):
    from test_fleet import FleetThread

    with FleetThread("hetero-demo", time_scale=1.0, router_port=0) as ft:
        client = Client(f"127.0.0.1:{ft.fleet.router_port}", timeout=10)
        session = client.attach("fleet", stream=stream)
        t0 = session.get().now_ns
        reply = session.advance(by_ns=50_000_000)  # 50 ms of simulated (= wall) time
        assert reply.reason == common_pb2.STOP_REASON_TARGET_REACHED and reply.time_ns >= t0 + 50_000_000
        reply = session.advance()  # nothing to decide: the long poll ends, call again
        assert reply.reason == common_pb2.STOP_REASON_INTERRUPTED and not reply.decisions
        with pytest.raises(HermesError) as e:  # not served, as a call and in-band on the stream
            session.inject([{"prompt_tokens": 10, "output_tokens": 2}])
        assert e.value.code.name == "UNIMPLEMENTED" and "not served by the fleet's router listener" in str(e.value)
        assert session.decisions() == []  # the stream goes on after an error
        client.close()


@pytest.mark.slow
def test_an_sdk_router_answers_every_stage_of_a_multistage_pipeline():
    proc, instances, gateway, router = _start_fleet("--set", "router.policy=external", "--time-scale", "20",
                                                    spec=MULTI)
    try:
        client, thread, errors = _drive(ToOne("dec-1", MODEL), router)  # the route stage's options are models
        served = []
        for i in range(4):
            status, body, headers = post(gateway + "/v1/completions",
                                         {"prompt": f"question {i} " * 10, "max_tokens": 6, "model": MODEL})
            assert status == 200 and body["usage"]["completion_tokens"] == 6 + 12, body  # answer + 2x thinking
            served.append(headers["x-hermes-instance"])
        assert served == ["dec-1"] * 4  # every decode stage went where the router said
        _, text = get(gateway + "/metrics")
        for stage in ("rag", "route", "prefill", "reasoning", "generic"):
            assert metric(text, "hermes_stage_latency_seconds_count", stage=stage) >= 4
        # every stage part asked the router: embed, search, rerank, route, prefill, decode, guard
        assert metric(text, "hermes_fleet_router_decisions_total") >= 4 * 7
        assert metric(text, "hermes_fleet_router_fallbacks_total") == 0 and not errors
    finally:
        proc.terminate()
        assert proc.wait(15) == 0

