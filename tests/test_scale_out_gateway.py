"""Clients outside the cluster: one address (a gateway) in front of the StatefulSet's shards,
routing by the `x-hermes-shard` header as deploy/k8s-scale-out/grpcroute.yaml says. The shards
are real `hermes serve` processes started with the pods' commands; the gateway is a loopback
proxy built from the GRPCRoute's rules (tests/grpc_gateway.py). A plain one-target SDK client
must send the header on every call for a session, so each call reaches the session's owner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import grpc
import pytest
from grpc_gateway import HeaderRouter, start_gateway
from k8s_support import SCALE_OUT, flag, grpcroute_table, kustomize, load, pick, pod_command, statefulset_pods
from metrics_support import IN_CI
from server_fixtures import ServerProcess, start_server

from client_sdk import Client
from client_sdk.client import SHARD_HEADER
from hermes.v1 import common_pb2 as pb
from hermes.v1 import session_pb2, simulator_pb2_grpc

pytestmark = pytest.mark.slow

SPEC = "hetero-poisson"
OVERRIDES = {"workload.num_requests": 60}
STEP_NS = 500_000_000
# calls that name no session: they may go to any replica
UNROUTED = {"CreateSession", "GetInfo", "ListSessions", "EstimateStep"}


def shard_args(command: list[str]) -> list[str]:
    """The pod's `hermes serve` options without its listen addresses (the test picks its own)
    and with a short drain grace."""
    args, rest = [], iter(command[2:])
    for a in rest:
        value = next(rest)
        if a not in ("--host", "--port", "--metrics-port", "--drain-grace"):
            args += [a, value]
    return [*args, "--drain-grace", "2"]


@pytest.fixture()
def gateway() -> Iterator[tuple[str, HeaderRouter, dict[str, ServerProcess]]]:
    objs = kustomize(SCALE_OUT)
    sts = pick(objs, "StatefulSet", "hermes")
    pods = statefulset_pods(sts)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    servers: dict[str, ServerProcess] = {}
    try:
        for name, labels in pods:
            servers[name] = start_server(*shard_args(pod_command(container, name, labels)))
        example = load(SCALE_OUT)
        services = {d["metadata"]["name"]: d for d in [*objs, *example] if d["kind"] == "Service"}
        by_header, default = grpcroute_table(pick(example, "GRPCRoute"), services, pods, SHARD_HEADER)
        router = HeaderRouter(SHARD_HEADER, {value: servers[pod].address for value, (pod,) in by_header.items()},
                              [servers[pod].address for pod in default])
        proxy, address = start_gateway(router)
        yield address, router, {flag(pod_command(container, n, lb), "--shard-id"): servers[n] for n, lb in pods}
        proxy.stop(None)
        router.close()
    finally:
        for s in servers.values():
            s.stop()


def run_to_end(session) -> str:
    for _ in range(6):
        session.advance(by_ns=STEP_NS)
    while session.advance().reason != pb.STOP_REASON_IDLE:
        pass
    return json.dumps(session.summary(), sort_keys=True)


def test_one_target_client_reaches_every_owner_through_the_gateway(gateway) -> None:
    address, router, shards = gateway
    with Client(next(iter(shards.values())).address) as direct, direct.create_session(
            SPEC, seed=4, overrides=OVERRIDES) as s:
        want = run_to_end(s)
    router.calls.clear()
    with Client(address) as c:
        assert not c.sharded
        unary = [c.create_session(SPEC, seed=4, overrides=OVERRIDES) for _ in range(len(shards))]
        assert {s.id.split(".")[0] for s in unary} == set(shards), "the default rule spreads new sessions"
        streamed = c.create_session(SPEC, seed=4, overrides=OVERRIDES, stream=True)  # bound to its stream
        unary[0].advance(by_ns=STEP_NS)
        streamed.advance(by_ns=STEP_NS)
        forks = [unary[0].fork(), streamed.fork()]  # made at (and then called at) the parent's owner
        others = [c.attach(unary[1].id), unary[2].stream()]  # by id; over a new stream, routed when opened
        for s in [unary[0], streamed, *forks, *others]:
            assert run_to_end(s) == want, s.id
        assert [f.id.split(".")[0] for f in forks] == [unary[0].id.split(".")[0], streamed.id.split(".")[0]]
        for s in [*unary, streamed, *forks]:
            s.close()
    without = [m for m, value, _ in router.calls if not value]
    assert without.count("Session") == 1, "only the stream a session is created on is opened unrouted"
    assert set(without) <= UNROUTED | {"Session"}, f"calls without {SHARD_HEADER}: {set(without) - UNROUTED}"
    assert {value for _, value, _ in router.calls if value} == set(shards)
    assert {m for m, value, _ in router.calls if value} >= {"Advance", "GetSummary", "Fork", "GetSession",
                                                             "CloseSession", "Session"}


def test_without_the_header_a_call_lands_on_another_shard(gateway) -> None:
    address, _, shards = gateway
    with Client(address) as c:
        s = c.create_session(SPEC, overrides=OVERRIDES)
        stub = simulator_pb2_grpc.SimulatorStub(c.channel)
        codes = set()
        for _ in range(len(shards)):  # round robin over the replicas: all but one are not the owner
            try:
                stub.GetSession(session_pb2.GetSessionRequest(session_id=s.id), timeout=10)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                assert "owned by shard" in err.details()
                codes.add(err.code())
        assert codes == {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}
        s.advance(by_ns=STEP_NS)  # with the header, the SDK's calls always reach it
        s.close()


def test_the_node_example_finds_the_owner_through_the_gateway(gateway) -> None:
    """examples/node/client.js sends the header the same way (Node and its packages as in
    tests/test_node_client.py: skipped without them unless CI is set)."""
    from test_node_client import NODE_DIR, run_client

    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        if IN_CI:
            pytest.fail("examples/node/node_modules missing -- CI must have it")
        pytest.skip("examples/node/node_modules missing; run scripts/install_test_deps.sh (npm ci)")
    address, router, shards = gateway
    owners = set()
    for _ in range(len(shards)):  # the default rule's round robin puts the sessions on different shards
        result, log = run_client(SimpleNamespace(target=address), "--preset", "hetero-demo", "--external",
                                 "--injection-only", "--requests", "8")
        assert result["completions"] == 8 and result["decisions"] >= 8
        owners.add(result["session_id"].split(".")[0])
    assert len(owners) >= 2, owners
    assert {m for m, value, _ in router.calls if value} >= {"Inject", "Advance", "Decide", "CloseSession"}
    assert {m for m, value, _ in router.calls if not value} <= UNROUTED
