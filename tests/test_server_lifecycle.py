"""Session lifecycle against a real server: stream-bound sessions, killed clients, idle reaping,
cancelled and expired calls, and GetSession/CloseSession while an Advance runs.

Calls in flight are held with the test-only Advance gate (tests/server_fixtures.AdvanceGate),
never with sleeps that race the server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest
from server_fixtures import ROOT, ServerProcess, env_with_root, start_server

from client_sdk import Client, NotFound, pb
from hermes.v1 import control_pb2, session_pb2, simulator_pb2_grpc

pytestmark = pytest.mark.slow

BIG = {"workload.num_requests": 200_000}  # far more than any test lets run
SMALL = {"workload.num_requests": 40}


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _ids(client: Client) -> set[str]:
    return {s.session_id for s in client.list_sessions()}


@pytest.fixture(scope="module")
def server():
    srv = start_server("--max-sessions", "20")
    yield srv
    assert srv.stop() == 0


@pytest.fixture()
def client(server: ServerProcess):
    with Client(server.address, timeout=60) as c:
        yield c


# ---------------------------------------------------------------- stream-bound sessions


def test_stream_session_closes_with_its_stream_unless_kept(client: Client, server: ServerProcess) -> None:
    bound = client.create_session("hetero-demo", stream=True)
    kept = client.create_session("hetero-demo", stream=True, keep=True)
    assert bound.info.bound_to_stream and not kept.info.bound_to_stream
    unary = client.create_session("hetero-demo")
    assert not unary.info.bound_to_stream
    bound._t.close()  # end the stream without CloseSession
    kept._t.close()
    _wait_for(lambda: bound.id not in _ids(client), what="the stream-bound session to close")
    assert {kept.id, unary.id} <= _ids(client)
    reaped = [d for d in server.logs() if d.get("msg") == "session reaped" and d.get("session_id") == bound.id]
    assert reaped and reaped[0]["reason"] == "stream_ended"
    client.attach(kept.id).close()
    unary.close()


_KILLED_CLIENT = textwrap.dedent("""
    import sys, time
    from client_sdk import Client
    c = Client(sys.argv[1], timeout=60)
    sessions = [c.create_session("hetero-poisson", overrides={"workload.num_requests": 200000}, stream=True)
                for _ in range(5)]
    print(" ".join(s.id for s in sessions), flush=True)
    sessions[0].advance()  # held by the gate when the test kills this process
""")


def test_killed_client_stream_sessions_are_reaped(client: Client, server: ServerProcess) -> None:
    before = _ids(client)
    rss_before = server.rss_kb()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, server.address], cwd=ROOT,
                            env=env_with_root(), stdout=subprocess.PIPE, text=True)
    try:
        ids = proc.stdout.readline().split()
        assert len(ids) == 5 and set(ids) <= _ids(client)
        server.gate.hold(ids[0])
        server.gate.wait_entered(ids[0])  # its Advance is in flight on the server
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for(lambda: not set(ids) & _ids(client), what="the killed client's sessions to be reaped")
    finally:
        if proc.poll() is None:
            proc.kill()
    server.gate.release(ids[0])
    assert _ids(client) == before
    reaped = {d["session_id"] for d in server.logs() if d.get("msg") == "session reaped"}
    assert set(ids) <= reaped
    # the slots are free again and the server still works
    with client.create_session("hetero-demo") as s:
        assert s.advance(by_ns=1_000_000).time_ns == 1_000_000
    print(f"\nkilled client: 5/5 stream sessions reaped; server RSS {rss_before} kB before, "
          f"{server.rss_kb()} kB after")


# ---------------------------------------------------------------- Advance while others act


def test_get_and_close_answer_while_advance_runs(client: Client, server: ServerProcess) -> None:
    s = client.create_session("hetero-poisson", overrides=BIG)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(reply=s.advance()))
    with server.gate.holding(s.id) as gate:
        t.start()
        gate.wait_entered(s.id)
        t0 = time.perf_counter()
        info = client.attach(s.id).get()  # answers without the session's step lock
        assert info.now_ns > 0 and info.session_id == s.id
        assert s.id in _ids(client)
        closed = client.unary.call("close_session", session_pb2.CloseSessionRequest(session_id=s.id), timeout=5)
        assert closed.session_id == s.id
        assert time.perf_counter() - t0 < 5
        t.join(timeout=30)  # the close interrupts the held Advance at its next check
    assert not t.is_alive()
    assert result["reply"].reason == pb.STOP_REASON_INTERRUPTED
    with pytest.raises(NotFound):
        client.attach(s.id)
    assert s.id not in _ids(client)


def test_cancelled_advance_stops_and_session_stays_usable(client: Client, server: ServerProcess) -> None:
    n = {"workload.num_requests": 3000}
    s = client.create_session("hetero-poisson", overrides=n, seed=3)
    stub = simulator_pb2_grpc.SimulatorStub(client.channel)
    with server.gate.holding(s.id) as gate:
        fut = stub.Advance.future(control_pb2.AdvanceRequest(session_id=s.id), timeout=60)
        gate.wait_entered(s.id)
        fut.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            fut.result()
        # the server noticed: the session answers again (the Advance no longer holds it)
        _wait_for(lambda: s.get().now_ns > 0, what="the cancelled Advance to stop")
        stopped_at = s.get().now_ns
    # the session goes on from a consistent point and ends where an uninterrupted run ends
    rest = s.advance()
    assert rest.reason == pb.STOP_REASON_IDLE and rest.time_ns >= stopped_at
    with client.create_session("hetero-poisson", overrides=n, seed=3) as control:
        assert control.advance().time_ns == rest.time_ns
        assert control.summary()["requests"] == s.summary()["requests"]
    s.close()


def test_advance_past_its_deadline_stops_early(client: Client, server: ServerProcess) -> None:
    s = client.create_session("hetero-poisson", overrides=BIG)
    with server.gate.holding(s.id):
        t0 = time.perf_counter()
        try:
            reply = s.advance(timeout=1.5)
            assert reply.reason == pb.STOP_REASON_INTERRUPTED  # answered just before the deadline
        except Exception as exc:  # or the deadline won the race on the wire
            assert getattr(exc, "code", None) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - t0 < 10
    # usable afterwards: a bounded step works
    now = s.get().now_ns
    assert s.advance(by_ns=1_000_000).time_ns == now + 1_000_000
    s.close()


def test_expired_create_session_creates_nothing(client: Client, server: ServerProcess) -> None:
    stub = simulator_pb2_grpc.SimulatorStub(client.channel)
    req = session_pb2.CreateSessionRequest(spec=session_pb2.SpecSource(preset="hetero-demo"), session_id="late-1")
    with server.gate.holding("late-1") as gate:  # the server holds this CreateSession before registering
        fut = stub.CreateSession.future(req, timeout=1.0)
        gate.wait_entered("late-1")
        with pytest.raises(grpc.RpcError) as err:
            fut.result()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # released after the deadline: the server gives up on it and registers nothing
    _wait_for(lambda: any(d.get("msg") == "call abandoned" and d.get("command") == "create_session"
                          for d in server.logs()), what="the server to drop the expired CreateSession")
    assert "late-1" not in _ids(client)
    with client.create_session("hetero-demo", session_id="late-1") as s:  # the id is free
        assert s.id == "late-1"


# ---------------------------------------------------------------- idle timeout


def test_idle_sessions_are_reaped_busy_ones_are_not() -> None:
    srv = start_server("--session-idle-timeout", "1")
    try:
        with Client(srv.address, timeout=60) as c:
            idle = c.create_session("hetero-demo")
            busy = c.create_session("hetero-poisson", overrides=BIG)
            result: dict = {}
            t = threading.Thread(target=lambda: result.update(reply=busy.advance()))
            with srv.gate.holding(busy.id) as gate:
                t.start()
                gate.wait_entered(busy.id)
                _wait_for(lambda: idle.id not in _ids(c), timeout=20, what="the idle session to be reaped")
                assert busy.id in _ids(c)  # held in an Advance for longer than the timeout, not idle
            t.join(timeout=30)
            assert result["reply"].time_ns > 0
            logs = [d for d in srv.logs() if d.get("msg") == "session reaped" and d.get("reason") == "idle"]
            assert any(d["session_id"] == idle.id and d["idle_s"] >= 1 for d in logs)
            assert c.info().limits.session_idle_timeout_s == 1
    finally:
        assert srv.stop() == 0


_KILLED_UNARY = textwrap.dedent("""
    import sys
    from client_sdk import Client
    c = Client(sys.argv[1], timeout=120)
    c.attach(sys.argv[2]).advance()  # held by the gate when the test kills this process
""")


def test_killed_clients_advance_stops(client: Client, server: ServerProcess) -> None:
    """A unary Advance whose client dies stops at its next check; the session is free again."""
    s = client.create_session("hetero-poisson", overrides=BIG)
    with server.gate.holding(s.id) as gate:  # held past the kill: only the dead client can end it
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_UNARY, server.address, s.id], cwd=ROOT,
                                env=env_with_root())
        try:
            gate.wait_entered(s.id)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        # a call that needs the session's step lock gets it: the dead client's Advance has stopped
        # (otherwise the gate would hold it for two minutes)
        ids = s.inject([{"prompt_tokens": 16, "output_tokens": 4}])
        assert len(ids) == 1
    assert s.get().now_ns > 0
    s.close()


def test_call_budget_interrupts_a_long_advance() -> None:
    srv = start_server("--max-call-seconds", "1")
    try:
        with Client(srv.address, timeout=60) as c:
            assert c.info().limits.max_call_seconds == 1.0
            s = c.create_session("hetero-poisson", overrides=BIG)
            with srv.gate.holding(s.id):  # held until the budget runs out
                t0 = time.perf_counter()
                reply = s.advance()
                took = time.perf_counter() - t0
            assert reply.reason == pb.STOP_REASON_INTERRUPTED and reply.time_ns > 0
            assert 1.0 <= took < 30
            again = s.advance(by_ns=1_000_000)  # the session goes on
            assert again.time_ns == reply.time_ns + 1_000_000
    finally:
        assert srv.stop() == 0


def test_session_memory_cap_names_the_field() -> None:
    from server.api.engine import engine_support

    if not engine_support()["memory_estimate"]:
        pytest.skip("the engine in this tree has no estimate_memory_bytes yet (sim_engine, engstruct's part)")
    srv = start_server("--session-memory-mb", "1")
    try:
        with Client(srv.address, timeout=60) as c:
            from client_sdk import ResourceExhausted

            with pytest.raises(ResourceExhausted, match="--session-memory-mb"):
                c.create_session("hetero-demo")
            assert c.list_sessions() == []
    finally:
        assert srv.stop() == 0
