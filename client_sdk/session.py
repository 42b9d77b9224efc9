"""`Session`: one simulated world on the server, driven with plain Python calls.

Replies are the hermes.v1 messages themselves (fields as in docs/API.md), except
`summary()` (a dict) and `inject()` / `snapshot()` (ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import struct_pb2

from hermes.v1 import common_pb2, control_pb2, session_pb2

from .errors import NotFound
from .replay import ReplayTransport
from .transport import StreamTransport

_ACTIONS = {
    "route": common_pb2.DECISION_ACTION_ROUTE,
    "defer": common_pb2.DECISION_ACTION_DEFER,
    "drop": common_pb2.DECISION_ACTION_DROP,
}
_CLUSTER_ACTIONS = {
    "add": common_pb2.CLUSTER_ACTION_ADD,
    "drain": common_pb2.CLUSTER_ACTION_DRAIN,
    "remove": common_pb2.CLUSTER_ACTION_REMOVE,
    "fail": common_pb2.CLUSTER_ACTION_FAIL,
}

RequestLike = common_pb2.RequestInput | Mapping[str, Any]
AnswerLike = control_pb2.DecisionAnswer | Mapping[str, Any]


def request_input(r: RequestLike) -> common_pb2.RequestInput:
    """A RequestInput from a message or a dict with the same field names."""
    return r if isinstance(r, common_pb2.RequestInput) else common_pb2.RequestInput(**r)


def answer(decision_id: str | int, action: str = "route", client_id: str = "",
           retry_after_ns: int = 0) -> control_pb2.DecisionAnswer:
    """One DecisionAnswer; `action` is route, defer or drop."""
    return control_pb2.DecisionAnswer(decision_id=str(decision_id), action=_ACTIONS[action],
                                      client_id=client_id, retry_after_ns=retry_after_ns)


class Session:
    """A session on the server. Use as a context manager to close it on exit."""

    def __init__(self, client: Any, info: session_pb2.SessionInfo, transport: Any, owns_transport: bool) -> None:
        self.client = client
        self.info = info
        self.id = info.session_id
        self._t = transport
        self._owns_transport = owns_transport

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def streaming(self) -> bool:
        return isinstance(self._t, StreamTransport) or (isinstance(self._t, ReplayTransport) and self._t.stream)

    def digest(self) -> str:
        """A hash of the session's simulated state (equal states, equal digests, in any process)."""
        return self._t.call("get_digest", session_pb2.GetDigestRequest(session_id=self.id)).digest

    def stream(self) -> Session:
        """The same session driven over a new bidirectional stream (faster lockstep)."""
        return self.client.attach(self.id, stream=True)

    # ------------------------------------------------------------ stepping

    def inject(self, requests: Iterable[RequestLike]) -> list[str]:
        req = control_pb2.InjectRequest(session_id=self.id, requests=[request_input(r) for r in requests])
        return list(self._t.call("inject", req).request_ids)

    def advance(self, until_ns: int | None = None, *, by_ns: int | None = None, next_event: bool = False,
                max_events: int = 0, timeout: float | None = None) -> control_pb2.AdvanceReply:
        """Move the clock. Give at most one of until_ns, by_ns, next_event; none runs to a stop."""
        req = control_pb2.AdvanceRequest(session_id=self.id, max_events=max_events)
        if sum(x is not None and x is not False for x in (until_ns, by_ns, next_event or None)) > 1:
            raise ValueError("give at most one of until_ns, by_ns, next_event")
        if until_ns is not None:
            req.until_ns = until_ns
        elif by_ns is not None:
            req.by_ns = by_ns
        elif next_event:
            req.next_event = True
        return self._t.call("advance", req, timeout)

    def decisions(self) -> list[common_pb2.Decision]:
        return list(self._t.call("get_decisions", control_pb2.GetDecisionsRequest(session_id=self.id)).decisions)

    def decide(self, answers: Iterable[AnswerLike]) -> int:
        """Answer pending decisions (all or nothing); returns how many are still pending."""
        msgs = [a if isinstance(a, control_pb2.DecisionAnswer) else answer(**a) for a in answers]
        return self._t.call("decide", control_pb2.DecideRequest(session_id=self.id, answers=msgs)).pending_decisions

    def batch_decisions(self) -> list[common_pb2.BatchDecision]:
        """Pending batch decisions (clients with `scheduler.batching: external`)."""
        reply = self._t.call("get_decisions", control_pb2.GetDecisionsRequest(session_id=self.id))
        return list(reply.batch_decisions)

    def decide_batch(self, answers: Iterable[control_pb2.BatchAnswer], routing: Iterable[AnswerLike] = ()) -> int:
        """Answer pending batch decisions, and `routing` decisions in the same call (all or nothing);
        returns how many decisions are still pending."""
        msgs = [a if isinstance(a, control_pb2.DecisionAnswer) else answer(**a) for a in routing]
        req = control_pb2.DecideRequest(session_id=self.id, answers=msgs, batch_answers=list(answers))
        return self._t.call("decide", req).pending_decisions

    def route(self, decision_id: str | int, client_id: str) -> int:
        return self.decide([answer(decision_id, "route", client_id)])

    def defer(self, decision_id: str | int, retry_after_ns: int) -> int:
        return self.decide([answer(decision_id, "defer", retry_after_ns=retry_after_ns)])

    def drop(self, decision_id: str | int) -> int:
        return self.decide([answer(decision_id, "drop")])

    def state(self) -> common_pb2.ClusterState:
        return self._t.call("get_state", control_pb2.GetStateRequest(session_id=self.id)).state

    def abort(self, request_ids: list[str]) -> list[str]:
        """Abort requests that have not ended; returns the ids aborted (unknown or ended ones are skipped)."""
        req = control_pb2.AbortRequest(session_id=self.id, request_ids=list(request_ids))
        return list(self._t.call("abort", req).aborted)

    def add_wakeup(self, time_ns: int, tag: str = "") -> None:
        self._t.call("add_wakeup", control_pb2.AddWakeupRequest(session_id=self.id, time_ns=time_ns, tag=tag))

    def change_cluster(self, time_ns: int, action: str, client_id: str,
                       client: Mapping[str, Any] | None = None) -> None:
        """add (with the client's spec), drain, remove or fail a client at `time_ns`."""
        req = control_pb2.ChangeClusterRequest(session_id=self.id, time_ns=time_ns,
                                               action=_CLUSTER_ACTIONS[action], client_id=client_id)
        if client is not None:
            req.client.CopyFrom(_struct(client))
        self._t.call("change_cluster", req)

    def summary(self) -> dict[str, Any]:
        return json.loads(self._t.call("get_summary", control_pb2.GetSummaryRequest(session_id=self.id)).summary_json)

    def get(self) -> session_pb2.SessionInfo:
        self.info = self._t.call("get_session", session_pb2.GetSessionRequest(session_id=self.id)).session
        return self.info

    # ------------------------------------------------------------ copies

    def fork(self, new_session_id: str = "", stream: bool | None = None, keep: bool = False) -> Session:
        """A copy as a new session; with `stream` (default: as this one) it is made on, and bound
        to, a new stream of its own (closed by the server when that stream ends, unless `keep`).
        On a sharded client the fork stays on its parent's replica and inherits its replay log."""
        use_stream = self.streaming if stream is None else stream
        req = session_pb2.ForkRequest(session_id=self.id, new_session_id=new_session_id, keep=keep)
        if isinstance(self._t, ReplayTransport):
            info = self._t.call("fork", req).session
            return self.client.attach(info, stream=use_stream, log=self._t.log.forked())
        # sent to (and, on a stream, bound to) the parent's owner, where the fork is made
        owner = self.client.owner_of(self.id)
        transport = self.client.transport_for(owner, use_stream, self.id)
        try:
            info = transport.call("fork", req).session
        except Exception:
            transport.close()
            raise
        if not use_stream:
            transport = self.client.transport_for(owner, False, info.session_id)
        return Session(self.client, info, transport, owns_transport=use_stream)

    def snapshot(self) -> str:
        return self._t.call("snapshot", session_pb2.SnapshotRequest(session_id=self.id)).snapshot_id

    def restore(self, snapshot_id: str) -> session_pb2.SessionInfo:
        self.info = self._t.call("restore", session_pb2.RestoreRequest(session_id=self.id,
                                                                       snapshot_id=snapshot_id)).session
        return self.info

    def drop_snapshot(self, snapshot_id: str) -> None:
        self._t.call("drop_snapshot", session_pb2.DropSnapshotRequest(session_id=self.id, snapshot_id=snapshot_id))

    # ------------------------------------------------------------ end

    def close(self) -> None:
        """Close the session on the server (a session already gone is fine)."""
        try:
            self._t.call("close_session", session_pb2.CloseSessionRequest(session_id=self.id))
        except NotFound:
            pass
        finally:
            if self._owns_transport:
                self._t.close()


def _struct(doc: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(doc)
    return s
