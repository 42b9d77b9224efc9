"""Hostile input to the HTTP front: every bad body gets a 4xx naming the field, in bounded time, and
leaves the simulation untouched; nothing (fuzzed JSON included) produces a 500. The same for bad
calls to the external router's gRPC listener (``--router-port``)."""

from __future__ import annotations

import json
import threading

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fleet import MODEL, ROOT, FleetThread, post

from hermes.v1 import common_pb2, control_pb2, session_pb2, simulator_pb2, simulator_pb2_grpc
from server.fleet.requests import BadRequest, Limits, parse_json, parse_request

LIMITS = Limits(max_body_bytes=1 << 20)

# (name, endpoint, body, status, param): body is a dict (sent as JSON) or raw bytes
CORPUS = [
    ("not json", "completions", b"{", 400, None),
    ("json array", "completions", b"[]", 400, None),
    ("json string", "completions", b'"prompt"', 400, None),
    ("deep nesting", "completions", b"[" * 100_000, 400, None),
    ("body over the limit", "completions", b'{"prompt": "' + b"x" * (1100 << 10) + b'"}', 413, None),
    ("no prompt", "completions", {"max_tokens": 3}, 400, "prompt"),
    ("prompt is a number", "completions", {"prompt": 5}, 400, "prompt"),
    ("prompt is empty", "completions", {"prompt": []}, 400, "prompt"),
    ("negative token id", "completions", {"prompt": [1, -2, 3]}, 400, "prompt"),
    ("float token id", "completions", {"prompt": [[1.5]]}, 400, "prompt"),
    ("bool token id", "completions", {"prompt": [[True]]}, 400, "prompt"),
    ("too many prompts", "completions", {"prompt": ["a"] * 17}, 400, "prompt"),
    ("prompt list of objects", "completions", {"prompt": [{"a": 1}]}, 400, "prompt"),
    ("prompt_token_ids not a list", "completions", {"prompt_token_ids": "1 2 3"}, 400, "prompt_token_ids"),
    ("prompt_token_ids empty", "completions", {"prompt_token_ids": []}, 400, "prompt_token_ids"),
    ("max_tokens string", "completions", {"prompt": "a", "max_tokens": "10"}, 400, "max_tokens"),
    ("max_tokens zero", "completions", {"prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
    ("max_tokens negative", "completions", {"prompt": "a", "max_tokens": -1}, 400, "max_tokens"),
    ("max_tokens float", "completions", {"prompt": "a", "max_tokens": 1.5}, 400, "max_tokens"),
    ("max_tokens bool", "completions", {"prompt": "a", "max_tokens": True}, 400, "max_tokens"),
    ("max_tokens huge", "completions", {"prompt": "a", "max_tokens": 2 ** 70}, 400, "max_tokens"),
    ("max_tokens NaN", "completions", b'{"prompt": "a", "max_tokens": NaN}', 400, "max_tokens"),
    ("max_tokens past the context", "completions", {"prompt": "a", "max_tokens": 1_000_000}, 400, "max_tokens"),
    ("prompt past the context", "completions", {"prompt_token_ids": [7] * 140_000}, 400, "prompt"),
    ("n zero", "completions", {"prompt": "a", "n": 0}, 400, "n"),
    ("n too large", "completions", {"prompt": "a", "n": 17}, 400, "n"),
    ("n huge", "completions", {"prompt": "a", "n": 2 ** 64}, 400, "n"),
    ("n string", "completions", {"prompt": "a", "n": "2"}, 400, "n"),
    ("n x prompts too many", "completions", {"prompt": ["a"] * 16, "n": 16}, 400, "n"),
    ("stream string", "completions", {"prompt": "a", "stream": "yes"}, 400, "stream"),
    ("stream_options list", "completions", {"prompt": "a", "stream_options": []}, 400, "stream_options"),
    ("include_usage string", "completions", {"prompt": "a", "stream_options": {"include_usage": "1"}}, 400,
     "include_usage"),
    ("ignore_eos string", "completions", {"prompt": "a", "ignore_eos": "true"}, 400, "ignore_eos"),
    ("model number", "completions", {"prompt": "a", "model": 5}, 400, "model"),
    ("unknown model", "completions", {"prompt": "a", "model": "gpt-nope"}, 404, "model"),
    ("no messages", "chat/completions", {"max_tokens": 2}, 400, "messages"),
    ("messages object", "chat/completions", {"messages": {"role": "user"}}, 400, "messages"),
    ("messages empty", "chat/completions", {"messages": []}, 400, "messages"),
    ("message not an object", "chat/completions", {"messages": [5]}, 400, "messages[0]"),
    ("message without role", "chat/completions", {"messages": [{"content": "x"}]}, 400, "messages[0]"),
    ("content number", "chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400,
     "messages[0].content"),
    ("content part not an object", "chat/completions",
     {"messages": [{"role": "user", "content": ["x"]}]}, 400, "messages[0].content"),
    ("max_completion_tokens negative", "chat/completions",
     {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -5}, 400, "max_completion_tokens"),
]
IDS = [c[0] for c in CORPUS]


def _body(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize(("name", "endpoint", "body", "status", "param"),
                         [c for c in CORPUS if c[3] == 400 and c[0] not in ("max_tokens past the context",
                                                                           "prompt past the context")],
                         ids=[c[0] for c in CORPUS if c[3] == 400 and c[0] not in (
                             "max_tokens past the context", "prompt past the context")])
def test_parser_rejects_with_the_field(name, endpoint, body, status, param):
    with pytest.raises(BadRequest) as e:
        parse_request(parse_json(_body(body), LIMITS), endpoint.startswith("chat"), LIMITS)
    assert e.value.status == status and e.value.param == param, (e.value.param, e.value.message)


@pytest.fixture(scope="module")
def fleet():
    with FleetThread(time_scale=1000.0, limits=LIMITS) as ft:
        yield ft


@pytest.mark.slow
def test_every_hostile_body_gets_its_error_and_changes_nothing(fleet):
    before = fleet.on_loop(lambda: (fleet.fleet.sim.injected, fleet.fleet.sim.now_ns >= 0))
    for name, endpoint, body, status, param in CORPUS:
        got, reply, _ = post(fleet.url(0) + "/v1/" + endpoint, _body(body))
        assert got == status, (name, got, reply)
        err = reply["error"]
        assert err["code"] == status and err["param"] == param and err["message"], (name, err)
    assert fleet.on_loop(lambda: (fleet.fleet.sim.injected, True)) == (before[0], True)
    assert all(i.inflight == 0 for i in fleet.fleet.instances)
    status, reply, _ = post(fleet.url(0) + "/v1/completions", {"model": MODEL, "prompt": "ok", "max_tokens": 2})
    assert status == 200 and reply["usage"]["completion_tokens"] == 2


@pytest.fixture(scope="module")
def gateway():
    with FleetThread(str(ROOT / "examples/specs/multistage-hetero.yaml"), time_scale=1000.0, limits=LIMITS,
                     gateway_port=0) as ft:
        yield ft


GATEWAY_CORPUS = CORPUS + [
    ("model of no client", "completions", {"prompt": "a", "model": "Llama-3.1-405B"}, 404, "model"),
    ("model not a string", "chat/completions", {"messages": [{"role": "user", "content": "x"}], "model": ["a"]},
     400, "model"),
]


@pytest.mark.slow
def test_every_hostile_body_to_the_gateway_gets_its_error_and_changes_nothing(gateway):
    gw = gateway.fleet.gateway
    before = gateway.on_loop(lambda: gateway.fleet.sim.injected)
    for name, endpoint, body, status, param in GATEWAY_CORPUS:
        got, reply, _ = post(gw.url + "/v1/" + endpoint, _body(body))
        assert got == status, (name, got, reply)
        err = reply["error"]
        assert err["code"] == status and err["param"] == param and err["message"], (name, err)
    assert gateway.on_loop(lambda: gateway.fleet.sim.injected) == before
    assert gw.inflight == 0
    status, reply, _ = post(gw.url + "/v1/completions", {"model": "Llama-3.1-70B", "prompt": "ok", "max_tokens": 2})
    assert status == 200 and reply["usage"]["completion_tokens"] == 2 + 4  # answer + the spec's 2x thinking


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "prompt": JSON, "messages": JSON, "max_tokens": JSON, "n": JSON, "stream": JSON, "model": JSON,
    "stream_options": JSON, "prompt_token_ids": JSON, "ignore_eos": JSON, "max_completion_tokens": JSON})


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=FIELDS, chat=st.booleans())
def test_fuzzed_bodies_never_cause_a_server_error(fleet, doc, chat):
    if isinstance(doc.get("max_tokens"), int) and doc["max_tokens"] > 4096:
        doc["max_tokens"] = 4096  # a valid but long request would only slow the test down
    got, reply, _ = post(fleet.url(1) + ("/v1/chat/completions" if chat else "/v1/completions"), doc)
    assert got in (200, 400, 404), (got, reply)
    if got != 200:
        assert reply["error"]["code"] == got and reply["error"]["message"]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=FIELDS, chat=st.booleans())
def test_fuzzed_bodies_to_the_gateway_never_cause_a_server_error(gateway, doc, chat):
    if isinstance(doc.get("max_tokens"), int) and doc["max_tokens"] > 4096:
        doc["max_tokens"] = 4096
    got, reply, _ = post(gateway.fleet.gateway.url + ("/v1/chat/completions" if chat else "/v1/completions"), doc)
    assert got in (200, 400, 404), (got, reply)
    if got != 200:
        assert reply["error"]["code"] == got and reply["error"]["message"]


# ---------------------------------------------------------------- the router listener (--router-port), over gRPC


@pytest.fixture(scope="module")
def routed():
    """A fleet whose external router listener asks for a token; one gateway decision is held."""
    with FleetThread("hetero-demo", time_scale=1.0, gateway_port=0, router_port=0, router_timeout_s=60.0,
                     router_token="s3cret") as ft:
        channel = grpc.insecure_channel(f"127.0.0.1:{ft.fleet.router_port}")
        stub = simulator_pb2_grpc.SimulatorStub(channel)
        md = (("authorization", "Bearer s3cret"),)
        stub.GetSession(session_pb2.GetSessionRequest(session_id="fleet"), metadata=md, timeout=10)  # connected
        thread = threading.Thread(target=post, args=(ft.fleet.gateway.url + "/v1/completions",
                                                     {"prompt": "x", "max_tokens": 2}), daemon=True)
        thread.start()
        reply = stub.Advance(control_pb2.AdvanceRequest(session_id="fleet"), metadata=md, timeout=10)
        assert reply.reason == common_pb2.STOP_REASON_DECISION_NEEDED and len(reply.decisions) == 1
        yield ft, stub, md, reply.decisions[0]
        stub.Decide(control_pb2.DecideRequest(session_id="fleet", answers=[control_pb2.DecisionAnswer(
            decision_id=reply.decisions[0].decision_id, action=common_pb2.DECISION_ACTION_ROUTE,
            client_id="h100-0")]), metadata=md, timeout=10)
        thread.join(30)
        channel.close()


def _decide(did: str, client: str = "h100-0", **kw) -> control_pb2.DecideRequest:
    a = control_pb2.DecisionAnswer(decision_id=did, action=kw.pop("action", common_pb2.DECISION_ACTION_ROUTE),
                                   client_id=client, **kw)
    return control_pb2.DecideRequest(session_id="fleet", answers=[a])


ROUTER_CASES = [  # (name, rpc, request(decision id), code, text the message starts with or holds)
    ("unknown decision", "Decide", lambda d: _decide("424242"), "NOT_FOUND", "answers[0].decision_id:"),
    ("unknown client", "Decide", lambda d: _decide(d, "ghost"), "NOT_FOUND", "answers[0].client_id:"),
    ("action out of the enum", "Decide", lambda d: _decide(d, action=7), "INVALID_ARGUMENT", "answers[0].action:"),
    ("defer without a delay", "Decide", lambda d: _decide(d, "", action=common_pb2.DECISION_ACTION_DEFER),
     "INVALID_ARGUMENT", "answers[0].retry_after_ns:"),
    ("client id on a drop", "Decide", lambda d: _decide(d, action=common_pb2.DECISION_ACTION_DROP),
     "INVALID_ARGUMENT", "answers[0].client_id:"),
    ("batch answers", "Decide", lambda d: control_pb2.DecideRequest(
        session_id="fleet", batch_answers=[control_pb2.BatchAnswer(decision_id=d)]),
     "INVALID_ARGUMENT", "batch_answers:"),
    ("another session", "GetDecisions", lambda d: control_pb2.GetDecisionsRequest(session_id="s-1"),
     "NOT_FOUND", "session_id:"),
    ("advance into the past", "Advance", lambda d: control_pb2.AdvanceRequest(session_id="fleet", until_ns=1),
     "OUT_OF_RANGE", "until_ns:"),
    ("negative by_ns", "Advance", lambda d: control_pb2.AdvanceRequest(session_id="fleet", by_ns=-5),
     "INVALID_ARGUMENT", "by_ns:"),
    ("an RPC the listener does not serve", "CreateSession", lambda d: session_pb2.CreateSessionRequest(),
     "UNIMPLEMENTED", "CreateSession: not served by the fleet's router listener"),
    ("oversized message", "Decide", lambda d: _decide(d, "x" * (5 << 20)), "RESOURCE_EXHAUSTED", ""),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "rpc", "make", "code", "text"), ROUTER_CASES, ids=[c[0] for c in ROUTER_CASES])
def test_a_bad_router_call_gets_a_precise_status_and_changes_nothing(routed, name, rpc, make, code, text):
    ft, stub, md, decision = routed
    with pytest.raises(grpc.RpcError) as e:
        getattr(stub, rpc)(make(decision.decision_id), metadata=md, timeout=10)
    assert e.value.code().name == code and text in e.value.details(), e.value.details()
    assert not text or e.value.details().startswith(text)
    still = stub.GetDecisions(control_pb2.GetDecisionsRequest(session_id="fleet"), metadata=md, timeout=10)
    assert [d.decision_id for d in still.decisions] == [decision.decision_id]
    assert ft.on_loop(lambda: (ft.fleet.router.decided, ft.fleet.router.fallbacks)) == (0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic s3cret"),)])
def test_the_router_listener_asks_for_its_token(routed, metadata):
    _, stub, _, _ = routed
    with pytest.raises(grpc.RpcError) as e:
        stub.GetDecisions(control_pb2.GetDecisionsRequest(session_id="fleet"), metadata=metadata, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and e.value.details().startswith("authorization:")


@pytest.mark.slow
def test_undecodable_bytes_get_invalid_argument_naming_the_request_and_change_nothing(routed):
    """As the lockstep server: bytes protobuf cannot parse are INVALID_ARGUMENT `request`, on a call and
    in-band on the Session stream (which goes on)."""
    ft, stub, md, decision = routed
    garbage = b"\xff\xff\xff\x07garbage"
    raw = {"request_serializer": bytes, "response_deserializer": bytes}
    with grpc.insecure_channel(f"127.0.0.1:{ft.fleet.router_port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/hermes.v1.Simulator/GetDecisions", **raw)(garbage, metadata=md, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details().startswith("request: cannot decode GetDecisionsRequest")
        ok = simulator_pb2.Command(id=7, get_decisions=control_pb2.GetDecisionsRequest(session_id="fleet"))
        replies = [simulator_pb2.Reply.FromString(b) for b in ch.stream_stream("/hermes.v1.Simulator/Session", **raw)(
            iter([garbage, ok.SerializeToString()]), metadata=md, timeout=5)]
    assert replies[0].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[0].status.message.startswith("request: cannot decode Command")
    assert replies[1].id == 7 and not replies[1].status.code
    assert [d.decision_id for d in replies[1].get_decisions.decisions] == [decision.decision_id]
    assert ft.on_loop(lambda: (ft.fleet.router.decided, ft.fleet.router.fallbacks)) == (0, 0)
