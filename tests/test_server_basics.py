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
from hermes.v1 import session_pb2, simulator_pb2_grpc

pytestmark = pytest.mark.slow  # every test here talks to a real server process

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
    # the token comes from the environment, never argv (argv shows in `ps`)
    server = start_server("--max-sessions", "2", "--max-requests-per-session", "20",
                          env={"HERMES_TOKEN": "s3cret"})
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
    assert "s3cret" not in open(f"/proc/{guarded_server.pid}/cmdline").read()


def _auth_failures(server: ServerProcess) -> list[dict]:
    return [doc for doc in server.logs() if doc.get("msg") == "auth failed"]


def test_auth_scheme_is_case_insensitive_and_failures_are_logged(guarded_server: ServerProcess) -> None:
    before = len(_auth_failures(guarded_server))
    with grpc.insecure_channel(guarded_server.address) as ch:
        stub = simulator_pb2_grpc.SimulatorStub(ch)
        for scheme in ("bearer", "BEARER", "Bearer"):
            reply = stub.GetInfo(session_pb2.GetInfoRequest(), metadata=(("authorization", f"{scheme} s3cret"),),
                                 timeout=10)
            assert reply.api_version == "hermes.v1"
        for value in ("Basic s3cret", "Bearer wrong-guess", "s3cret"):
            with pytest.raises(grpc.RpcError) as err:
                stub.GetInfo(session_pb2.GetInfoRequest(), metadata=(("authorization", value),), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    deadline = time.monotonic() + 10
    while len(failed := _auth_failures(guarded_server)[before:]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(failed) == 3 and all(d["method"] == "/hermes.v1.Simulator/GetInfo" for d in failed)
    assert {d["reason"] for d in failed} >= {"authorization: expected the Bearer scheme",
                                             "authorization: wrong bearer token"}
    assert not any("wrong-guess" in line or "s3cret" in line for line in guarded_server.stderr_lines)


def test_token_file_and_no_token_on_argv(tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    server = start_server("--token-file", str(token_file))
    try:
        with Client(server.address, token="from-a-file") as c:
            assert "auth" in c.info().capabilities
        with Client(server.address) as c, pytest.raises(Unauthenticated):
            c.info()
    finally:
        assert server.stop() == 0
    # the old argv flag is gone: a token on the command line is refused, not silently used
    from server.cli import build_parser
    from server.cli.serve import ConfigError, config_from_args

    with pytest.raises(ConfigError, match="--token-file"):
        config_from_args(build_parser().parse_args(["serve", "--token", "x"]))


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

    def long_advance() -> None:
        result["reply"] = session.advance()

    t = threading.Thread(target=long_advance)
    with server.gate.holding(session.id) as gate:  # the Advance is in flight, held after its first slice
        t.start()
        gate.wait_entered(session.id)
        server.proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)  # draining interrupts the held call: no release needed
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
    # far more work than the test needs: the Advance runs until CloseSession stops it, so the
    # checks below always happen while it computes (no race with its end)
    busy = client.create_session("hetero-poisson", overrides={"workload.num_requests": 500_000})
    other = client.create_session("hetero-demo")
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(reply=busy.advance()))
    t.start()
    while busy.get().now_ns == 0:  # its first slice is done: the Advance is computing
        time.sleep(0.01)
    worst = 0.0
    for _ in range(10):
        t0 = time.perf_counter()
        assert _health(hermes_server.address) == health_pb2.HealthCheckResponse.SERVING
        other.advance(by_ns=1_000)
        worst = max(worst, time.perf_counter() - t0)
    assert t.is_alive(), "the long Advance ended before the checks did"
    busy.close()  # answers at once; the Advance stops at its next slice
    t.join(timeout=60)
    assert result["reply"].reason == pb.STOP_REASON_INTERRUPTED
    assert worst < 0.5, f"a call waited {worst:.3f} s behind another session's Advance"
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


def test_metrics_endpoint_requires_the_token_when_one_is_set(tmp_path) -> None:
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics_file = tmp_path / "metrics-token"
    metrics_file.write_text("scrape-me\n")
    server = start_server("--metrics-port", str(port), "--metrics-token-file", str(metrics_file),
                          env={"HERMES_TOKEN": "grpc-only"})
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for header in (None, "Bearer grpc-only", "Bearer wrong"):
            req = urllib.request.Request(url, headers={"Authorization": header} if header else {})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code in (401, 403)
        for scheme in ("Bearer", "bearer"):
            req = urllib.request.Request(url, headers={"Authorization": f"{scheme} scrape-me"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        assert server.stop() == 0
