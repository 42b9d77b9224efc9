"""External batch scheduling over a real `hermes serve`: batch decisions on the wire, unary and stream.

The vLLM-style batcher of examples/external_batcher.py, run through the SDK's
`BatchScheduler`, must give per-request results identical to the built-in chunked
policy; shortest-remaining-first must differ and stay valid; bad answers must fail with
the field named and leave the session's digest unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import pytest
from server_fixtures import ROOT, ServerProcess, env_with_root

from client_sdk import Batch, InvalidArgument, NotFound
from hermes.v1 import common_pb2

sys.path.insert(0, str(ROOT / "examples"))
from external_batcher import ContinuousBatcher, ShortestRemainingFirst  # noqa: E402

pytestmark = pytest.mark.slow

PRESET = "llama3-8b-h100"
N = 60
BASE = {"workload.num_requests": N, "clients[0].scheduler.max_num_batched_tokens": 512}
EXTERNAL = {**BASE, "clients[0].scheduler.batching": "external"}


def completions(events: Sequence[common_pb2.Event]) -> dict[str, tuple]:
    return {e.request_id: (e.time_ns, e.result.ttft_s, e.result.e2e_s, e.result.output_tokens, e.result.preemptions)
            for e in events if e.kind == common_pb2.EVENT_KIND_COMPLETED}


class Recorder:
    """Mixed into a batcher: keeps every event it is shown."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[common_pb2.Event] = []

    def on_events(self, events: Sequence[common_pb2.Event]) -> None:
        self.events.extend(events)


class RecordingContinuous(Recorder, ContinuousBatcher):
    pass


class RecordingSrf(Recorder, ShortestRemainingFirst):
    pass


def builtin_completions(client) -> dict[str, tuple]:
    events = []
    with client.create_session(PRESET, seed=3, overrides=BASE) as s:
        while True:
            reply = s.advance()
            events.extend(reply.events)
            if reply.reason == common_pb2.STOP_REASON_IDLE:
                return completions(events)


@pytest.fixture(scope="module")
def reference(hermes_server: ServerProcess) -> dict[str, tuple]:
    from client_sdk import Client

    with Client(hermes_server.address, timeout=60) as c:
        return builtin_completions(c)


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_external_chunked_batcher_matches_the_builtin_over_the_wire(client, reference, stream):
    batcher = RecordingContinuous(chunked=True)
    with client.create_session(PRESET, seed=3, overrides=EXTERNAL, stream=stream) as s:
        summary = batcher.run(s)
    assert summary["requests"]["completed"] == N
    assert len(reference) == N
    assert completions(batcher.events) == reference


def test_shortest_remaining_first_differs_and_completes(client, reference):
    batcher = RecordingSrf()
    with client.create_session(PRESET, seed=3, overrides=EXTERNAL, stream=True) as s:
        summary = batcher.run(s)
    got = completions(batcher.events)
    assert summary["requests"]["completed"] == N and set(got) == set(reference)
    assert all(got[r][3] == reference[r][3] for r in got)  # same tokens per request
    assert got != reference  # different timings


def test_batch_decision_on_the_wire_and_bad_answers_change_nothing(client):
    assert "external_batching" in client.info().capabilities
    with client.create_session(PRESET, seed=3, overrides={**EXTERNAL, "workload.num_requests": 3}) as s:
        reply = s.advance()
        assert reply.reason == common_pb2.STOP_REASON_DECISION_NEEDED
        (d,) = reply.batch_decisions
        assert list(s.batch_decisions()) == [d]
        assert d.client_id == "h100" and d.token_budget == 512 and d.free_blocks == d.total_blocks > 0
        assert len(d.waiting) == 1 and not d.running
        w = d.waiting[0]
        assert w.prefill_tokens == w.prompt_tokens > 0 and w.computed_tokens == 0
        digest = s.digest()
        bad = [
            (Batch([("nope", 1)]), NotFound, "batch_answers[0].schedule[0].request_id"),
            (Batch([(w.request_id, w.prompt_tokens + 1)]), InvalidArgument, "batch_answers[0].schedule[0].tokens"),
            (Batch([], [w.request_id]), InvalidArgument, "batch_answers[0].preempt[0]"),
            (Batch([(w.request_id, 1), (w.request_id, 1)]), InvalidArgument,
             "batch_answers[0].schedule[1].request_id"),
            (Batch([(w.request_id, 1)], repeat_decodes=True), InvalidArgument, "batch_answers[0].repeat_decodes"),
        ]
        for batch, error, field in bad:
            with pytest.raises(error, match=field.replace("[", r"\[").replace("]", r"\]")):
                s.decide_batch([batch.to_proto(d.decision_id)])
            assert s.digest() == digest
        with pytest.raises(InvalidArgument, match=r"batch_answers\[1\].decision_id"):
            s.decide_batch([Batch().to_proto(d.decision_id)] * 2)
        assert s.digest() == digest
        assert s.decide_batch([Batch([(w.request_id, min(w.prompt_tokens, 512))]).to_proto(d.decision_id)]) == 0
        assert s.digest() != digest


def test_example_batcher_prints_the_summary(hermes_server: ServerProcess) -> None:
    proc = subprocess.run([sys.executable, "examples/external_batcher.py", "--target", hermes_server.address,
                           "--policy", "srf", "--requests", "20", "--stream"],
                          cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["requests"]["completed"] == 20


class RoutingBatcher(ContinuousBatcher):
    """Routes round robin and batches: one Decide call answers both kinds of decision."""

    def __init__(self) -> None:
        super().__init__(chunked=True)
        self.routed = 0

    def route(self, decision, state):
        self.routed += 1
        return decision.candidates[self.routed % len(decision.candidates)]


def test_external_routing_and_batching_in_one_session(client):
    overrides = {"router": "external", "workload.num_requests": 30,
                 **{f"clients[{i}].scheduler.batching": "external" for i in range(3)}}
    batcher = RoutingBatcher()
    with client.create_session("hetero-poisson", seed=2, overrides=overrides, stream=True) as s:
        summary = batcher.run(s)
    assert summary["requests"]["completed"] == 30 and batcher.routed >= 30
    assert all(c["requests_completed"] > 0 for c in summary["clients"])
