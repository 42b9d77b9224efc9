"""Lockstep equivalence through a real server: built-in routing vs offline `hermes simulate`,
external round robin vs built-in round robin, stream vs unary, fork and snapshot/restore."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

from server_fixtures import ROOT, env_with_root

from client_sdk import Client, RoundRobinScheduler, Session, pb

PRESET = "hetero-poisson"
N = 40


def run_to_idle(session: Session, until_ns: int | None = None) -> list[Any]:
    """Advance a built-in-router session until idle (or until_ns); return all events."""
    events: list[Any] = []
    while True:
        reply = session.advance(until_ns=until_ns)
        events.extend(reply.events)
        if reply.reason in (pb.STOP_REASON_IDLE, pb.STOP_REASON_TARGET_REACHED):
            return events


class Recorder(RoundRobinScheduler):
    """Round robin that also keeps every event it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def on_events(self, events: Any) -> None:
        self.events.extend(events)


def completions(events: list[Any]) -> dict[str, tuple]:
    """request id -> (completion time, client, every RequestResult field)."""
    out = {}
    for e in events:
        if e.kind == pb.EVENT_KIND_COMPLETED:
            r = e.result
            out[e.request_id] = (e.time_ns, e.client_id, r.prompt_tokens, r.output_tokens, r.ttft_s, r.tpot_s,
                                 r.e2e_s, r.queue_s, r.prefill_s, r.decode_s, r.preemptions, r.model)
    return out


def without_wall(summary: dict) -> dict:
    s = dict(summary)
    s.pop("wall_time_s", None)
    return s


def test_builtin_router_matches_offline_simulate(client: Client, tmp_path) -> None:
    out = tmp_path / "summary.json"
    subprocess.run([sys.executable, "-m", "server.cli", "simulate", PRESET, "--seed", "7", "-q",
                    "--set", f"workload.num_requests={N}", "--json", str(out)],
                   cwd=ROOT, env=env_with_root(), check=True, timeout=120)
    offline = json.loads(out.read_text())
    with client.create_session(PRESET, seed=7, overrides={"workload.num_requests": N}) as s:
        events = run_to_idle(s)
        online = s.summary()
    assert without_wall(online) == without_wall(offline)
    assert len(completions(events)) == offline["requests"]["completed"]


def _rr_builtin(client: Client, stream: bool) -> tuple[dict, dict]:
    with client.create_session(PRESET, seed=3, overrides={"workload.num_requests": N, "router": "round_robin"},
                               stream=stream) as s:
        events = run_to_idle(s)
        return completions(events), s.summary()


def _rr_external(client: Client, stream: bool) -> tuple[dict, dict]:
    with client.create_session(PRESET, seed=3, overrides={"workload.num_requests": N, "router": "external"},
                               stream=stream) as s:
        sched = Recorder()
        summary = sched.run(s)
        return completions(sched.events), summary


def test_external_round_robin_matches_builtin_round_robin(client: Client) -> None:
    builtin, builtin_summary = _rr_builtin(client, stream=False)
    external, external_summary = _rr_external(client, stream=False)
    assert len(builtin) == N
    assert external == builtin
    assert external_summary == builtin_summary


def test_stream_and_unary_give_identical_results(client: Client) -> None:
    assert _rr_external(client, stream=True) == _rr_external(client, stream=False)
    assert _rr_builtin(client, stream=True) == _rr_builtin(client, stream=False)


def test_fork_same_inputs_match_and_diverging_inputs_diverge_only_the_fork(client: Client) -> None:
    overrides = {"workload.num_requests": N, "router": "external"}
    with client.create_session(PRESET, seed=5, overrides=overrides) as original:
        sched = RoundRobinScheduler()
        sched.run(original, until_ns=3_000_000_000)  # part way
        same = original.fork()
        other = original.fork(stream=True)
        sched_same, sched_other = copy.deepcopy(sched), copy.deepcopy(sched)
        extra = [{"prompt_tokens": 3000, "output_tokens": 400, "request_id": "what-if"}]
        other.inject(extra)
        assert same.info.parent_session_id == original.id

        rec_orig, rec_same, rec_other = Recorder(), Recorder(), Recorder()
        for rec, base in ((rec_orig, sched), (rec_same, sched_same), (rec_other, sched_other)):
            rec._next = dict(base._next)
        s_orig = rec_orig.run(original)
        s_same = rec_same.run(same)
        s_other = rec_other.run(other)
        assert completions(rec_same.events) == completions(rec_orig.events)
        assert without_wall(s_same) == without_wall(s_orig)
        assert "what-if" in completions(rec_other.events)
        assert completions(rec_other.events) != completions(rec_orig.events)
        assert s_other["requests"]["injected"] == s_orig["requests"]["injected"] + 1
        # the original is unaffected by what happened to its forks
        with client.create_session(PRESET, seed=5, overrides=overrides) as control:
            assert without_wall(RoundRobinScheduler().run(control)) == without_wall(s_orig)
        same.close()
        other.close()


def test_snapshot_restore_replays_identically(client: Client) -> None:
    with client.create_session(PRESET, seed=11, overrides={"workload.num_requests": N}, stream=True) as s:
        run_to_idle(s, until_ns=2_000_000_000)
        snap = s.snapshot()
        first = completions(run_to_idle(s))
        end_summary = s.summary()
        info = s.restore(snap)
        assert info.now_ns == 2_000_000_000 and info.snapshots == 1
        again = completions(run_to_idle(s))
        assert again == first
        assert without_wall(s.summary()) == without_wall(end_summary)
        s.drop_snapshot(snap)
        assert s.get().snapshots == 0


def test_advance_modes_and_event_filter(client: Client) -> None:
    with client.create_session(PRESET, seed=2, overrides={"workload.num_requests": 10},
                               event_kinds=[pb.EVENT_KIND_COMPLETED]) as s:
        r = s.advance(by_ns=1_000)
        assert r.reason == pb.STOP_REASON_TARGET_REACHED and r.time_ns == 1_000
        r = s.advance(next_event=True)
        assert r.time_ns > 1_000
        r = s.advance(max_events=3)
        assert r.reason == pb.STOP_REASON_EVENT_BOUND and r.events_processed == 3
        s.add_wakeup(r.time_ns + 5, "tick")
        r = s.advance()
        assert r.reason == pb.STOP_REASON_WAKEUP  # wake-up events are filtered out, the stop is not
        events = run_to_idle(s)
        assert events and all(e.kind == pb.EVENT_KIND_COMPLETED for e in events)
        state = s.state()
        assert state.completed == 10 and len(state.clients) == 3
        assert sum(c.requests_completed_total for c in state.clients) == 10


def test_defer_and_drop_answers(client: Client) -> None:
    overrides = {"workload.num_requests": 3, "router": "external"}
    with client.create_session(PRESET, seed=4, overrides=overrides) as s:
        first = s.advance()
        d = first.decisions[0]
        assert s.defer(d.decision_id, 5_000_000) == 0
        again = s.advance()
        assert again.reason == pb.STOP_REASON_DECISION_NEEDED
        assert again.decisions[0].request_id == d.request_id
        assert again.time_ns == first.time_ns + 5_000_000
        s.drop(again.decisions[0].decision_id)
        summary = RoundRobinScheduler().run(s)
        assert summary["requests"]["dropped"] == 1 and summary["requests"]["completed"] == 2


def test_state_reports_links_of_a_topology(client: Client) -> None:
    spec = ROOT / "examples" / "specs" / "multistage-hetero.yaml"
    with client.create_session(spec, overrides={"workload.num_requests": 10}) as s:
        s.advance(until_ns=3_000_000_000)
        links = s.state().links
        assert links and [link.id for link in links] == sorted(link.id for link in links)
        assert any(link.bytes_moved > 0 and 0 < link.utilization <= 1 for link in links)


def test_abort_frees_a_running_request_and_ends_it_once(client: Client) -> None:
    overrides = {"workload.arrival": {"process": "none"}}
    with client.create_session(PRESET, seed=3, overrides=overrides) as s:
        ids = s.inject([pb.RequestInput(prompt_tokens=200, output_tokens=5000, request_id="long"),
                        pb.RequestInput(prompt_tokens=200, output_tokens=20, request_id="short")])
        assert ids == ["long", "short"]
        s.advance(until_ns=500_000_000)  # both decoding (the short one is done)
        used = sum(c.kv_used_blocks for c in s.state().clients)
        assert used > 0
        assert s.abort(["long", "nope", "long"]) == ["long"]
        state = s.state()
        assert (state.aborted, state.in_flight) == (1, 0)
        assert sum(c.kv_used_blocks for c in state.clients) == 0
        events = run_to_idle(s)
        aborted = [e for e in events if e.request_id == "long"]
        assert [e.kind for e in aborted] == [pb.EVENT_KIND_ABORTED]
        assert 0 < aborted[0].result.output_tokens < 5000
        assert s.summary()["requests"]["aborted"] == 1
