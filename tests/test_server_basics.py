"""A real `hermes serve` process: health, reflection, info, auth, limits, SIGTERM drain."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from server_fixtures import ServerProcess, start_server

from client_sdk import Client, ResourceExhausted, Unauthenticated, Unavailable, pb

SMALL = {"workload.num_requests": 12}


def _health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_is_serving(hermes_server: ServerProcess) -> None:
    assert _health(hermes_server.address) == health_pb2.HealthCheckResponse.SERVING
    assert _health(hermes_server.address, "hermes.v1.Simulator") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_hermes_services(hermes_server: ServerProcess) -> None:
    with grpc.insecure_channel(hermes_server.address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=10)
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert "hermes.v1.Simulator" in names
    assert "grpc.health.v1.Health" in names


def test_info_lists_version_capabilities_and_presets(client: Client) -> None:
    info = client.info()
    assert info.api_version == "hermes.v1"
    assert {"stream", "fork", "snapshot", "external_routing"} <= set(info.capabilities)
    assert "hetero-demo" in {p.name for p in info.presets}
    assert "external" in info.router_policies
    assert info.limits.max_sessions == 200


def test_serve_logs_json_lines(hermes_server: ServerProcess) -> None:
    import json

    first = json.loads(hermes_server.stderr_lines[0])
    assert first["msg"] == "serving" and first["address"] == hermes_server.address


@pytest.fixture(scope="module")
def guarded_server():
    server = start_server("--token", "s3cret", "--max-sessions", "2", "--max-requests-per-session", "20")
    yield server
    assert server.stop() == 0


def test_auth_rejects_missing_or_wrong_token_but_not_health(guarded_server: ServerProcess) -> None:
    for token in (None, "wrong"):
        with Client(guarded_server.address, token=token) as c, pytest.raises(Unauthenticated):
            c.info()
        with Client(guarded_server.address, token=token) as c, pytest.raises(Unauthenticated):
            c.create_session("hetero-poisson", overrides=SMALL, stream=True)
    with Client(guarded_server.address, token="s3cret") as c:
        assert c.info().api_version == "hermes.v1"
        assert "auth" in c.info().capabilities
    assert _health(guarded_server.address) == health_pb2.HealthCheckResponse.SERVING


def test_limits_answer_resource_exhausted(guarded_server: ServerProcess) -> None:
    with Client(guarded_server.address, token="s3cret") as c:
        with pytest.raises(ResourceExhausted, match="workload.num_requests"):
            c.create_session("hetero-poisson", overrides={"workload.num_requests": 21})
        a = c.create_session("hetero-demo")
        b = c.create_session("hetero-demo")
        with pytest.raises(ResourceExhausted, match="sessions"):
            c.create_session("hetero-demo")
        with pytest.raises(ResourceExhausted, match="requests"):
            a.inject([{"prompt_tokens": 10, "output_tokens": 5}] * 21)
        a.inject([{"prompt_tokens": 10, "output_tokens": 5}] * 20)
        with pytest.raises(ResourceExhausted):
            a.inject([{"prompt_tokens": 10, "output_tokens": 5}])
        a.close()
        b.close()
        c.create_session("hetero-demo").close()  # slots are freed by close


def test_sigterm_drains_in_flight_calls_and_exits_zero() -> None:
    server = start_server()
    c = Client(server.address, timeout=60)
    session = c.create_session("hetero-poisson", overrides={"workload.num_requests": 20000})
    result: dict = {}

    def long_advance() -> None:  # seconds of simulation in one call
        result["reply"] = session.advance()

    t = threading.Thread(target=long_advance)
    t.start()
    time.sleep(0.4)
    server.proc.send_signal(signal.SIGTERM)
    t.join(timeout=60)
    # the call in flight finished normally (early, at a consistent point) ...
    assert result["reply"].reason == pb.STOP_REASON_INTERRUPTED
    assert 0 < result["reply"].time_ns and result["reply"].events
    # ... and a new call is refused while the server drains
    with pytest.raises(Unavailable):
        session.advance()
    assert server.proc.wait(timeout=30) == 0
    logs = "".join(server.stderr_lines)
    assert '"draining"' in logs and '"clean": true' in logs
    c.close()


def test_long_advance_blocks_neither_other_sessions_nor_health(hermes_server: ServerProcess,
                                                               client: Client) -> None:
    busy = client.create_session("hetero-poisson", overrides={"workload.num_requests": 8000})
    other = client.create_session("hetero-demo")
    done = threading.Event()
    t = threading.Thread(target=lambda: (busy.advance(), done.set()))
    t.start()
    time.sleep(0.2)
    worst = 0.0
    checks = 0
    while not done.is_set() and checks < 20:
        t0 = time.perf_counter()
        assert _health(hermes_server.address) == health_pb2.HealthCheckResponse.SERVING
        other.advance(by_ns=1_000)
        worst = max(worst, time.perf_counter() - t0)
        checks += 1
    t.join(timeout=60)
    assert checks >= 3, "the long Advance ended too soon to measure anything"
    assert worst < 0.5, f"a call waited {worst:.3f} s behind another session's Advance"
    busy.close()
    other.close()


def test_session_ids_are_isolated(client: Client) -> None:
    a = client.create_session("hetero-poisson", overrides=SMALL, seed=1)
    b = client.create_session("hetero-poisson", overrides=SMALL, seed=1)
    assert a.id != b.id
    a.advance(until_ns=2_000_000_000)
    assert b.get().now_ns == 0
    assert {a.id, b.id} <= {s.session_id for s in client.list_sessions()}
    a.close()
    b.close()
    assert pb.STOP_REASON_IDLE  # enum re-exported for SDK users
