"""Bad input never hurts a session: every RPC with malformed, out-of-range and wrong-state
arguments returns the right status code, and the session then produces exactly the results
of a control session that saw only the calls that succeeded."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_sdk import (
    AlreadyExists,
    Client,
    HermesError,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    RoundRobinScheduler,
    Session,
    pb,
)
from client_sdk.session import answer
from hermes.v1 import control_pb2, session_pb2, simulator_pb2

PRESET = "hetero-poisson"
OVERRIDES = {"workload.num_requests": 20, "router": "external"}
SEED = 21
EXPECTED_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
                  grpc.StatusCode.RESOURCE_EXHAUSTED}
# commands that change a session when they succeed: replayed on the control session
MUTATING = {"inject", "advance", "decide", "abort", "add_wakeup", "change_cluster", "snapshot", "restore", "drop_snapshot"}
COMMAND_FIELDS = {f.name: f.message_type for f in
                  simulator_pb2.Command.DESCRIPTOR.oneofs_by_name["command"].fields}


def finish(session: Session) -> tuple[dict, Any]:
    summary = RoundRobinScheduler().run(session)
    return summary, session.state()


def call(session: Session, key: str, request: Any) -> Any:
    return session._t.call(key, request)


def control_after(client: Client, log: list[tuple[str, Any]]) -> Session:
    """A fresh session that received only the successful mutating calls of `log`."""
    control = client.create_session(PRESET, seed=SEED, overrides=OVERRIDES)
    for key, request in log:
        request = type(request).FromString(request.SerializeToString())
        request.session_id = control.id
        call(control, key, request)
    return control


# ---------------------------------------------------------------- hand-written cases


def expect(exc: type[HermesError], fn: Callable[[], Any], *fields: str) -> None:
    with pytest.raises(exc) as info:
        fn()
    for f in fields:
        assert f in info.value.message, info.value.message


def test_hand_written_bad_calls_get_the_right_code_and_change_nothing(client: Client) -> None:
    s = client.create_session(PRESET, seed=SEED, overrides=OVERRIDES, stream=True)
    ok: list[tuple[str, Any]] = []

    def good(key: str, request: Any) -> Any:
        reply = call(s, key, request)
        if key in MUTATING:
            ok.append((key, request))
        return reply

    sid = s.id
    first = good("advance", control_pb2.AdvanceRequest(session_id=sid))
    assert first.reason == pb.STOP_REASON_DECISION_NEEDED and first.decisions
    d = first.decisions[0]
    now = first.time_ns
    assert now > 0  # the first arrival of a Poisson workload

    # create
    expect(NotFound, lambda: client.create_session("no-such-preset"), "spec.preset")
    expect(InvalidArgument, lambda: client.create_session({"clients": []}), "clients")
    expect(InvalidArgument, lambda: client.create_session(PRESET, overrides={"clients[0].tp": 0}), "clients[0].tp")
    expect(InvalidArgument, lambda: client.create_session("name: x\nclients: [", seed=1), "spec.yaml")
    expect(InvalidArgument, lambda: client.create_session({"seed": float("nan")}), "spec.document.seed")
    expect(InvalidArgument, lambda: client.create_session(PRESET, session_id="bad id!"), "session_id")
    expect(AlreadyExists, lambda: client.create_session(PRESET, session_id=sid), "session_id")
    expect(InvalidArgument, lambda: client.create_session(PRESET, event_kinds=[99]), "event_kinds[0]")
    expect(InvalidArgument, lambda: call(s, "create_session", session_pb2.CreateSessionRequest()), "spec")
    # inject
    req = pb.RequestInput
    expect(InvalidArgument, lambda: s.inject([req(prompt_tokens=0, output_tokens=4)]), "requests[0].prompt_tokens")
    expect(InvalidArgument, lambda: s.inject([req(prompt_tokens=5, output_tokens=4),
                                              req(prompt_tokens=5, output_tokens=-1)]), "requests[1].output_tokens")
    expect(OutOfRange, lambda: s.inject([req(prompt_tokens=5, output_tokens=4, arrival_ns=now - 1)]),
           "requests[0].arrival_ns")
    expect(InvalidArgument, lambda: s.inject([req(prompt_tokens=5, output_tokens=4, model="nope")]),
           "requests[0].model")
    expect(InvalidArgument, lambda: s.inject([]), "requests")
    good("inject", control_pb2.InjectRequest(session_id=sid, requests=[req(prompt_tokens=64, output_tokens=8,
                                                                           request_id="mine")]))
    expect(AlreadyExists, lambda: s.inject([req(prompt_tokens=5, output_tokens=4, request_id="mine")]),
           "request_id")
    # abort: a bad id anywhere refuses the whole call (nothing is aborted)
    expect(InvalidArgument, lambda: s.abort(["mine", "bad\x00id"]), "request_ids[1]")
    expect(InvalidArgument, lambda: s.abort(["mine", "r" * 10_000]), "request_ids[1]")
    # advance
    expect(OutOfRange, lambda: s.advance(until_ns=now - 1), "until_ns")
    expect(InvalidArgument, lambda: s.advance(by_ns=-5), "by_ns")
    expect(InvalidArgument, lambda: s.advance(max_events=-1), "max_events")
    expect(OutOfRange, lambda: s.advance(by_ns=2**63 - 1), "by_ns")
    expect(OutOfRange, lambda: s.advance(until_ns=2**62 + 1), "until_ns")  # past the horizon
    expect(OutOfRange, lambda: s.add_wakeup(2**63 - 1), "time_ns")
    expect(OutOfRange, lambda: s.inject([req(prompt_tokens=5, output_tokens=4, arrival_ns=2**63 - 1)]),
           "requests[0].arrival_ns")
    expect(InvalidArgument, lambda: s.inject([req(prompt_tokens=2**40, output_tokens=4)]),
           "requests[0].prompt_tokens")
    expect(OutOfRange, lambda: s.defer(d.decision_id, 2**62), "answers[0].retry_after_ns")
    # decide
    expect(NotFound, lambda: s.route("999999", d.candidates[0]), "answers[0].decision_id")
    expect(NotFound, lambda: s.route(d.decision_id, "no-such-client"), "answers[0].client_id")
    expect(InvalidArgument, lambda: s.decide([answer(d.decision_id, "defer")]), "answers[0].retry_after_ns")
    expect(InvalidArgument, lambda: s.decide([control_pb2.DecisionAnswer(decision_id=d.decision_id)]),
           "answers[0].action")
    expect(InvalidArgument, lambda: s.decide([answer(d.decision_id, "route", d.candidates[0])] * 2),
           "answers.decision_id")
    expect(InvalidArgument, lambda: s.decide([]), "answers")
    # a batch with one bad answer applies none of them
    expect(NotFound, lambda: s.decide([answer(d.decision_id, "route", d.candidates[0]), answer("424242", "drop")]),
           "answers[1].decision_id")
    assert d.decision_id in {x.decision_id for x in s.decisions()}
    # wake-ups and cluster changes
    expect(OutOfRange, lambda: s.add_wakeup(now - 1), "time_ns")
    expect(InvalidArgument, lambda: s.add_wakeup(-1), "time_ns")
    expect(NotFound, lambda: s.change_cluster(now, "drain", "no-such-client"), "client_id")
    expect(InvalidArgument, lambda: s.change_cluster(now, "add", "new-0"), "client")
    expect(InvalidArgument, lambda: s.change_cluster(now, "add", "new-0", {"hardware": "H100-SXM", "model": 7}),
           "model")
    expect(AlreadyExists, lambda: s.change_cluster(now, "add", "h100-0",
                                                   {"hardware": "H100-SXM", "model": "Llama-3.1-8B"}), "client_id")
    expect(OutOfRange, lambda: s.change_cluster(now - 1, "fail", "h100-0"), "time_ns")
    expect(InvalidArgument, lambda: s.change_cluster(-1, "fail", "h100-0"), "time_ns")
    expect(InvalidArgument, lambda: call(s, "change_cluster", control_pb2.ChangeClusterRequest(
        session_id=sid, client_id="h100-0")), "action")
    # snapshots
    expect(NotFound, lambda: s.restore("snap-9"), "snapshot_id")
    expect(NotFound, lambda: s.drop_snapshot("snap-9"), "snapshot_id")
    # unknown sessions
    expect(NotFound, lambda: call(s, "advance", control_pb2.AdvanceRequest(session_id="missing")), "session_id")
    expect(InvalidArgument, lambda: call(s, "get_state", control_pb2.GetStateRequest()), "session_id")
    expect(NotFound, lambda: client.attach("missing"), "session_id")
    expect(AlreadyExists, lambda: s.fork(new_session_id=sid), "new_session_id")
    # an empty stream command is answered in-band and the stream goes on
    reply = _raw_stream_roundtrip(client, simulator_pb2.Command(id=7))
    assert reply.id == 7 and reply.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]

    control = control_after(client, ok)
    assert finish(s) == finish(control)
    closed_id = s.id
    s.close()
    control.close()
    # stepping a closed session
    expect(NotFound, lambda: call(control, "advance", control_pb2.AdvanceRequest(session_id=closed_id)),
           "session_id")


def _raw_stream_roundtrip(client: Client, cmd: simulator_pb2.Command) -> simulator_pb2.Reply:
    replies = client.stub.Session(iter([cmd]), metadata=client.metadata, timeout=30)
    return next(replies)


def test_limit_from_the_spec_is_resource_exhausted(client: Client) -> None:
    with client.create_session("hetero-demo", overrides={"limits.max_requests": 2}) as s:
        s.inject([{"prompt_tokens": 8, "output_tokens": 2}] * 2)
        expect(ResourceExhausted, lambda: s.inject([{"prompt_tokens": 8, "output_tokens": 2}]), "requests")


# ---------------------------------------------------------------- property-based fuzz

SESSION_ID = "fuzz-target"
TEXT = st.one_of(
    st.sampled_from(["", "h100-0", "a100-0", "l40s-0", "snap-1", "1", "2", "3", "#1", "Llama-3.1-8B",
                     "hetero-demo", "round_robin", "x" * 200, "bad id!", "\x00"]),
    st.text(max_size=12),
)
SESSION_IDS = st.sampled_from([SESSION_ID, SESSION_ID, SESSION_ID, "", "missing", "bad id!", "y" * 70])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(-5, 10**6), TEXT)
JSON = st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
                    max_leaves=8)
INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
}


def _struct(doc: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(doc)
    return s


def _scalar(f: FieldDescriptor) -> st.SearchStrategy:
    if f.type in INT_RANGES:
        lo, hi = INT_RANGES[f.type]
        return st.one_of(st.integers(max(lo, -3), 40), st.integers(lo, hi),
                         st.sampled_from([v for v in (0, 1, 10**9, 2**62, -1, 10**12) if lo <= v <= hi]))
    if f.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-2, 12)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats()
    if f.name in ("session_id", "new_session_id"):
        return SESSION_IDS
    return TEXT


def message_strategy(desc: Any, depth: int = 0) -> st.SearchStrategy:
    """Any message of type `desc`, field by field (each field present or not)."""
    if desc.full_name == "google.protobuf.Struct":
        return st.dictionaries(TEXT, JSON, max_size=4).map(_struct)
    cls = GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            fields[f.name] = st.dictionaries(TEXT, JSON, max_size=3)
        elif f.message_type is not None:
            if depth >= 3:
                continue
            inner = message_strategy(f.message_type, depth + 1)
            fields[f.name] = st.lists(inner, max_size=3) if f.is_repeated else inner
        else:
            fields[f.name] = st.lists(_scalar(f), max_size=3) if f.is_repeated else _scalar(f)

    def build(values: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            target = getattr(msg, name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    target[k].CopyFrom(_value(v))
            elif field.is_repeated:
                if field.message_type is not None:
                    for v in value:
                        target.add().CopyFrom(v)
                else:
                    target.extend(value)
            elif field.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)


def _value(v: Any) -> struct_pb2.Value:
    return _struct({"v": v}).fields["v"]


# near-valid messages, so the fuzz also reaches the checks behind the first invalid field (and
# sometimes succeeds). Draws are state-free (time offsets, decision indexes); `resolve` turns them
# into a message against the session's current clock and pending decisions.
CLIENTS = st.sampled_from(["h100-0", "a100-0", "l40s-0", "new-1", "nope"])
SID = st.sampled_from([SESSION_ID] * 5 + ["missing"])
TIME = st.one_of(st.tuples(st.just("rel"), st.integers(0, 5 * 10**9)),
                 st.tuples(st.just("rel"), st.integers(-3, 0)),
                 st.tuples(st.just("abs"), st.sampled_from([0, 2**63 - 1, -1])))
DECISION = st.one_of(st.integers(0, 3).map(lambda i: ("pending", i)), st.sampled_from([("id", "0"), ("id", "999")]))
SNAP = st.sampled_from(["snap-1", "snap-2", "snap-9"])
NEW_CLIENT = st.sampled_from([None, {"hardware": "A100-80GB", "model": "Llama-3.1-8B"}, {"hardware": "nope"}])


def resolve(plan: Any, now: int, pending: list[str]) -> Any:
    """Replace ("rel", dt) / ("abs", t) times and ("pending", i) / ("id", x) decisions by values."""
    if isinstance(plan, tuple) and len(plan) == 2 and plan[0] in ("rel", "abs", "pending", "id"):
        kind, v = plan
        if kind == "rel":
            return max(now + v, -1)
        if kind == "pending":
            return pending[v % len(pending)] if pending else "999"
        return v
    if isinstance(plan, dict):
        return {k: resolve(v, now, pending) for k, v in plan.items()}
    if isinstance(plan, list):
        return [resolve(v, now, pending) for v in plan]
    return plan


def _answer(plan: dict) -> control_pb2.DecisionAnswer:
    return control_pb2.DecisionAnswer(**plan)


def _plan(key: str, **fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.just(key), st.fixed_dictionaries(fields))


ROUTE = st.fixed_dictionaries({"decision_id": DECISION, "action": st.just(pb.DECISION_ACTION_ROUTE),
                               "client_id": CLIENTS})
DEFER = st.fixed_dictionaries({"decision_id": DECISION, "action": st.just(pb.DECISION_ACTION_DEFER),
                               "retry_after_ns": st.integers(1, 10**9)})
DROP = st.fixed_dictionaries({"decision_id": DECISION, "action": st.just(pb.DECISION_ACTION_DROP)})
ANY_ANSWER = st.fixed_dictionaries({"decision_id": DECISION, "action": st.integers(0, 4),
                                    "client_id": st.one_of(st.just(""), CLIENTS),
                                    "retry_after_ns": st.sampled_from([0, 1000, -5])})
REQUEST = st.fixed_dictionaries({"prompt_tokens": st.integers(-1, 3000), "output_tokens": st.integers(-1, 300),
                                 "model": st.sampled_from(["", "", "x"]),
                                 "request_id": st.sampled_from(["", "", "r1", "r2", "#9"])},
                                optional={"arrival_ns": TIME})
NEAR_VALID = st.one_of(
    _plan("inject", session_id=SID, requests=st.lists(REQUEST, min_size=1, max_size=3)),
    _plan("advance", session_id=SID, until_ns=TIME, max_events=st.integers(0, 40)),
    _plan("advance", session_id=SID, by_ns=TIME.map(lambda t: ("abs", t[1]) if t[0] == "rel" else t),
          max_events=st.integers(0, 40)),
    _plan("advance", session_id=SID, next_event=st.booleans()),
    _plan("decide", session_id=SID, answers=st.lists(st.one_of(ROUTE, DEFER, DROP, ANY_ANSWER), min_size=1,
                                                     max_size=2)),
    _plan("add_wakeup", session_id=SID, time_ns=TIME, tag=st.sampled_from(["", "t"])),
    _plan("abort", session_id=SID, request_ids=st.lists(st.sampled_from(["", "r1", "r2", "#0", "#1", "x\x00"]),
                                                        max_size=3)),
    _plan("change_cluster", session_id=SID, time_ns=TIME, client_id=CLIENTS,
          action=st.sampled_from([pb.CLUSTER_ACTION_DRAIN, pb.CLUSTER_ACTION_REMOVE, pb.CLUSTER_ACTION_FAIL])),
    _plan("change_cluster", session_id=SID, time_ns=TIME, client_id=CLIENTS, action=st.integers(0, 5),
          client=NEW_CLIENT),
    _plan("restore", session_id=SID, snapshot_id=SNAP),
    _plan("drop_snapshot", session_id=SID, snapshot_id=SNAP),
    _plan("snapshot", session_id=SID),
)


def build(key: str, fields: dict) -> Any:
    msg = GetMessageClass(COMMAND_FIELDS[key])()
    for name, value in fields.items():
        if name == "requests":
            msg.requests.extend(pb.RequestInput(**r) for r in value)
        elif name == "answers":
            msg.answers.extend(_answer(a) for a in value)
        elif name == "request_ids":
            msg.request_ids.extend(value)
        elif name == "client":
            if value is not None:
                msg.client.CopyFrom(_struct(value))
        else:
            setattr(msg, name, value)
    return msg


def generic(key: str) -> st.SearchStrategy:
    return st.tuples(st.just(key), message_strategy(COMMAND_FIELDS[key]))


def test_fuzzed_requests_get_expected_codes_and_never_corrupt_the_session(client: Client) -> None:
    target = client.create_session(PRESET, seed=SEED, overrides=OVERRIDES, session_id=SESSION_ID, stream=True)
    unary = client.attach(SESSION_ID)
    ok_log: list[tuple[str, Any]] = []
    seen: dict[str, set] = {}

    def fuzz(commands: st.SearchStrategy | None, examples: int) -> None:
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large])
        @given(data=st.data(), use_stream=st.booleans())
        def one(data: st.DataObject, use_stream: bool) -> None:
            if commands is None:  # near-valid: resolved against the session as it is now
                key, plan = data.draw(NEAR_VALID)
                now, pending = unary.get().now_ns, [d.decision_id for d in unary.decisions()]
                request = build(key, resolve(plan, now, pending))
            else:
                key, request = data.draw(commands)
            if key == "close_session" and request.session_id == SESSION_ID:
                request.session_id = "missing"
            session = target if use_stream else unary
            try:
                reply = call(session, key, request)
            except HermesError as err:
                assert err.code in EXPECTED_CODES, f"{key}: {err}"
                seen.setdefault(key, set()).add(err.code.name)
                return
            seen.setdefault(key, set()).add("OK")
            if key in ("create_session", "fork"):
                client.attach(reply.session.session_id).close()
            elif key in MUTATING and request.session_id == SESSION_ID:
                ok_log.append((key, request))

        one()

    scale = int(os.environ.get("HERMES_FUZZ_SCALE", "1"))  # e.g. 20 for a long bug hunt
    for key in sorted(COMMAND_FIELDS):
        fuzz(generic(key), 15 * scale)
    fuzz(None, 200 * scale)
    assert len(seen) == len(COMMAND_FIELDS), f"commands never tried: {set(COMMAND_FIELDS) - set(seen)}"
    assert len(ok_log) >= 5, ok_log  # the replay below must have something to replay
    control = control_after(client, ok_log)
    assert finish(target) == finish(control)
    target.close()
    control.close()
