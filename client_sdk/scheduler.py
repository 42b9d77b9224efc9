"""`ExternalScheduler`: subclass it, override `route(decision, state)`, call `run(session)`.
`BatchScheduler`: the same for clients with `scheduler.batching: external`: override
`batch(decision)` (and `route` too if the session also routes externally).

The loop advances the session until it needs a routing decision, asks `route`
for each pending decision (with one fresh cluster state per batch of
decisions), answers them in one call, and repeats until the session is idle
(or `until_ns` is reached). It returns the session's summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hermes.v1 import common_pb2, control_pb2

from .session import Session, answer


@dataclass(frozen=True)
class Defer:
    """Ask again after `retry_after_ns` nanoseconds of simulated time."""

    retry_after_ns: int


@dataclass(frozen=True)
class Drop:
    """Drop the request."""


RouteResult = str | Defer | Drop

Progress = Callable[[control_pb2.AdvanceReply, int], None]


class ExternalScheduler:
    """Base class for schedulers that answer a session's routing decisions from outside."""

    #: fetch the cluster state before each batch of decisions (set False if `route` ignores it)
    needs_state: bool = True

    def route(self, decision: common_pb2.Decision, state: common_pb2.ClusterState | None) -> RouteResult:
        """Return the client id to route to, `Defer(ns)` or `Drop()`."""
        raise NotImplementedError

    def on_events(self, events: Sequence[common_pb2.Event]) -> None:
        """Called with the events of every Advance reply (override to watch completions)."""

    def begin_batch(self, decisions: Sequence[common_pb2.Decision], state: common_pb2.ClusterState | None) -> None:
        """Called before `route` is asked about a batch of decisions that share one `state`."""

    def run(self, session: Session, until_ns: int | None = None, max_events: int = 0,
            progress: Progress | None = None) -> dict[str, Any]:
        """Drive `session` until it is idle (or reaches `until_ns`); return its summary."""
        decided = 0
        while True:
            reply = session.advance(until_ns=until_ns, max_events=max_events)
            if reply.events:
                self.on_events(reply.events)
            if reply.reason == common_pb2.STOP_REASON_DECISION_NEEDED:
                decided += self._decide(session, reply)
            elif reply.reason in (common_pb2.STOP_REASON_IDLE, common_pb2.STOP_REASON_TARGET_REACHED):
                if progress is not None:
                    progress(reply, decided)
                return session.summary()
            if progress is not None:
                progress(reply, decided)

    def _decide(self, session: Session, reply: Any) -> int:
        """Answer the decisions that stopped an Advance; returns how many were answered."""
        decisions = reply.decisions or session.decisions()
        state = session.state() if self.needs_state else None
        self.begin_batch(decisions, state)
        session.decide([self._answer(d, state) for d in decisions])
        return len(decisions)

    def _answer(self, d: common_pb2.Decision, state: common_pb2.ClusterState | None) -> control_pb2.DecisionAnswer:
        choice = self.route(d, state)
        if isinstance(choice, str):
            return answer(d.decision_id, "route", choice)
        if isinstance(choice, Defer):
            return answer(d.decision_id, "defer", retry_after_ns=choice.retry_after_ns)
        if isinstance(choice, Drop):
            return answer(d.decision_id, "drop")
        raise TypeError(f"route() must return a client id, Defer or Drop, not {choice!r}")


@dataclass(frozen=True)
class Batch:
    """One step of a client: `schedule` is (request id, tokens) pairs, prefill chunks and decodes (1 token).

    `preempt` runs first, in order (each victim goes to the head of the waiting queue);
    `repeat_decodes` (decode-only steps) repeats the step until a request arrives, one
    finishes or the next step's KV does not fit.
    """

    schedule: Sequence[tuple[str, int]] = ()
    preempt: Sequence[str] = ()
    repeat_decodes: bool = False

    def to_proto(self, decision_id: str) -> control_pb2.BatchAnswer:
        return control_pb2.BatchAnswer(
            decision_id=decision_id, preempt=list(self.preempt), repeat_decodes=self.repeat_decodes,
            schedule=[control_pb2.BatchItem(request_id=rid, tokens=tokens) for rid, tokens in self.schedule])


class BatchScheduler(ExternalScheduler):
    """Base class for iteration-level batch schedulers run from outside (`scheduler.batching: external`).

    At every step boundary where a client has work the session stops with a
    `BatchDecision` (limits, KV blocks, waiting and running requests); `batch` returns
    the step. Routing decisions, if the session has any, go to `route` as in
    `ExternalScheduler`.
    """

    needs_state = False

    def batch(self, decision: common_pb2.BatchDecision) -> Batch:
        raise NotImplementedError

    def _decide(self, session: Session, reply: Any) -> int:
        """Answer the routing and batch decisions that stopped an Advance, in one Decide call."""
        decisions, batches = list(reply.decisions), list(reply.batch_decisions)
        routing = []
        if decisions:
            state = session.state() if self.needs_state else None
            self.begin_batch(decisions, state)
            routing = [self._answer(d, state) for d in decisions]
        session.decide_batch([self.batch(b).to_proto(b.decision_id) for b in batches], routing)
        return len(decisions) + len(batches)


class RoundRobinScheduler(ExternalScheduler):
    """Cycle through the candidates, one cycle per distinct candidate list (as the built-in router)."""

    needs_state = False

    def __init__(self) -> None:
        self._next: dict[tuple[str, ...], int] = {}

    def route(self, decision: common_pb2.Decision, state: common_pb2.ClusterState | None) -> RouteResult:
        key = tuple(decision.candidates)
        i = self._next.get(key, 0)
        self._next[key] = (i + 1) % len(key)
        return key[i % len(key)]


class LeastKvScheduler(ExternalScheduler):
    """The candidate with the smallest KV-cache use plus queued prompt tokens, as a share of its blocks.

    Decisions answered in the same batch see the load this scheduler just added,
    so a burst of arrivals is spread rather than piled on one client.
    """

    def __init__(self, block_size: int = 16) -> None:
        self.block_size = block_size

    def begin_batch(self, decisions: Sequence[common_pb2.Decision], state: common_pb2.ClusterState | None) -> None:
        self._added: dict[str, int] = {}  # prompt tokens routed since `state` was taken

    def route(self, decision: common_pb2.Decision, state: common_pb2.ClusterState | None) -> RouteResult:
        assert state is not None
        clients = {c.id: c for c in state.clients}
        added = self._added

        def load(cid: str) -> float:
            c = clients.get(cid)
            if c is None or not c.kv_total_blocks:
                return float("inf")
            queued = (c.waiting_prompt_tokens + added.get(cid, 0)) / self.block_size
            return (c.kv_used_blocks + queued) / c.kv_total_blocks

        choice = min(decision.candidates, key=lambda cid: (load(cid), list(decision.candidates).index(cid)))
        added[choice] = added.get(choice, 0) + decision.prompt_tokens
        return choice
