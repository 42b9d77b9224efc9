"""Commands that step or inspect one session: inject, advance, decisions, state, wake-ups,
cluster changes, summary. Every field is checked before the simulation is touched."""

from __future__ import annotations

import time
from typing import Any

import sim_engine
from hermes.v1 import common_pb2, control_pb2
from sim_engine import BatchAnswer, BatchItem, DecisionAnswer

from ..errors import exhausted, invalid, not_found
from . import engine, slices, validate, wire
from .base import ApiBase, CallContext

MAX_ANSWERS = 100_000  # answers in one Decide call (checking them holds the GIL)


def decision_number(value: str, field: str) -> int:
    """A decision id from the wire (decimal digits, no leading zeros); anything else is NOT_FOUND."""
    if not (value.isdigit() and str(int(value)) == value):
        raise not_found(field, f"no pending decision {value!r}")
    return int(value)


def routing_answers(msgs: Any) -> list[DecisionAnswer]:
    """Engine DecisionAnswers from the wire's ``answers``, with the wire-level checks (fields per
    action, unique ids); the engine (or the fleet's router desk) checks them against its decisions.
    Shared by the lockstep server's Decide and the fleet's router listener."""
    for i, a in enumerate(msgs):
        path = f"answers[{i}]"
        validate.required_text(a.decision_id, f"{path}.decision_id")
        validate.enum_value(common_pb2.DecisionAction, a.action, f"{path}.action")
        if a.action == common_pb2.DECISION_ACTION_ROUTE:
            validate.required_text(a.client_id, f"{path}.client_id")
        elif a.client_id:
            raise invalid(f"{path}.client_id", "only for action ROUTE")
        if a.action == common_pb2.DECISION_ACTION_DEFER:
            validate.positive(a.retry_after_ns, f"{path}.retry_after_ns")
        elif a.retry_after_ns:
            raise invalid(f"{path}.retry_after_ns", "only for action DEFER")
    validate.unique((a.decision_id for a in msgs), "answers.decision_id")
    return [DecisionAnswer(decision_number(a.decision_id, f"answers[{i}].decision_id"),
                           wire.DECISION_ACTIONS[a.action], a.client_id or None, a.retry_after_ns or None)
            for i, a in enumerate(msgs)]


def check_retry_times(answers: list[DecisionAnswer], now: int) -> None:
    """A defer's retry time must stay within the simulated-time range."""
    for i, a in enumerate(answers):
        if a.retry_after_ns:
            validate.sim_time(now + a.retry_after_ns, now, f"answers[{i}].retry_after_ns")


class SteppingApi(ApiBase):
    # ------------------------------------------------------------ inject

    def inject(self, req: control_pb2.InjectRequest, call: CallContext) -> control_pb2.InjectReply:
        sid = validate.session_id(req.session_id)
        if not req.requests:
            raise invalid("requests", "missing (give at least one request)")
        limit = self.config.max_requests_per_session
        if limit and len(req.requests) > limit:
            raise exhausted("requests", f"{len(req.requests)} requests exceed the limit of {limit} per session")
        per_call = self.config.max_requests_per_call
        if per_call and len(req.requests) > per_call:
            raise exhausted("requests", f"{len(req.requests)} requests exceed the limit of {per_call} per call; "
                            "inject them in several calls")
        with self.manager.use(sid, call=call) as s:
            if limit and s.requests_injected + len(req.requests) > limit:
                raise exhausted("requests", f"session would hold more than {limit} injected requests")
            now = int(s.sim.now_ns)
            inputs = [self._request_input(r, f"requests[{i}]", now) for i, r in enumerate(req.requests)]
            ids = s.sim.inject(inputs)
            s.requests_injected += len(inputs)
            return control_pb2.InjectReply(request_ids=[str(i) for i in ids])

    @staticmethod
    def _request_input(r: common_pb2.RequestInput, path: str, now: int) -> Any:
        validate.token_count(r.prompt_tokens, f"{path}.prompt_tokens")
        validate.token_count(r.output_tokens, f"{path}.output_tokens")
        arrival = validate.sim_time(r.arrival_ns, now, f"{path}.arrival_ns") if r.HasField("arrival_ns") else now
        return sim_engine.RequestInput(
            arrival_ns=arrival, prompt_tokens=int(r.prompt_tokens), output_tokens=int(r.output_tokens),
            model=validate.short_text(r.model, f"{path}.model") or None,
            pipeline=validate.short_text(r.pipeline, f"{path}.pipeline") or None,
            request_id=validate.request_id(r.request_id, f"{path}.request_id"),
            prefix_key=validate.short_text(r.prefix_key, f"{path}.prefix_key") or None,
        )

    # ------------------------------------------------------------ abort

    def abort(self, req: control_pb2.AbortRequest, call: CallContext) -> control_pb2.AbortReply:
        sid = validate.session_id(req.session_id)
        if len(req.request_ids) > MAX_ANSWERS:
            raise exhausted("request_ids", f"{len(req.request_ids)} ids exceed the limit of {MAX_ANSWERS} per call")
        ids = [validate.short_text(r, f"request_ids[{i}]") for i, r in enumerate(req.request_ids)]
        with self.manager.use(sid, call=call) as s:
            reply = control_pb2.AbortReply()
            for rid in ids:
                (reply.aborted if s.sim.abort(rid) else reply.not_found).append(rid)
            return reply

    # ------------------------------------------------------------ advance

    def advance(self, req: control_pb2.AdvanceRequest, call: CallContext) -> control_pb2.AdvanceReply:
        sid = validate.session_id(req.session_id)
        validate.non_negative(req.max_events, "max_events")
        target = req.WhichOneof("target")
        if target == "by_ns":
            validate.non_negative(req.by_ns, "by_ns")  # a negative duration is malformed, not "in the past"
        # the tighter of the caller's bound and the server's cap on events per reply (0: none)
        bound = min((b for b in (req.max_events, self.config.max_events_per_reply) if b), default=None)
        with self.manager.use(sid, call=call) as s:
            now = int(s.sim.now_ns)
            until: int | None = None
            if target == "until_ns":
                until = validate.sim_time(req.until_ns, now, "until_ns")
            elif target == "by_ns":
                until = validate.sim_time(now + req.by_ns, now, "by_ns")
            t0 = time.perf_counter()
            out = slices.advance(s.sim, until, target == "next_event", bound,
                                 lambda: s.closed or call.interrupted(), self._after_slice(s, call))
            wall = time.perf_counter() - t0
            reply = control_pb2.AdvanceReply(
                time_ns=out.time_ns, reason=wire.STOP_REASONS[out.reason],
                events_processed=out.events_processed)
            wire.fill_events(reply.events, out.events, s.event_kinds)
            if out.reason == "DECISION_NEEDED":
                self._fill_decisions(reply, s.sim)
            self.hooks.session_advanced(sid, s.sim, out.events, wall)
            return reply

    def _after_slice(self, s: Any, call: CallContext) -> Any:
        """Between slices: publish the clock (GetSession reads it unlocked); the test gate, if on."""
        first = [True]

        def after(time_ns: int) -> None:
            s.now_ns = int(time_ns)
            if self.gate is not None and first[0]:
                first[0] = False
                self.gate.hold(s.session_id, lambda: s.closed or call.interrupted())

        return after

    # ------------------------------------------------------------ decisions

    def get_decisions(self, req: control_pb2.GetDecisionsRequest,
                      call: CallContext) -> control_pb2.GetDecisionsReply:
        sid = validate.session_id(req.session_id)
        with self.manager.use(sid, mutates=False, call=call) as s:
            reply = control_pb2.GetDecisionsReply()
            self._fill_decisions(reply, s.sim)
            return reply

    @staticmethod
    def _fill_decisions(reply: Any, sim: Any) -> None:
        for d in sim.pending_decisions():
            wire.fill_decision(reply.decisions.add(), d)
        for b in sim.pending_batch_decisions():
            wire.fill_batch_decision(reply.batch_decisions.add(), b)

    def decide(self, req: control_pb2.DecideRequest, call: CallContext) -> control_pb2.DecideReply:
        sid = validate.session_id(req.session_id)
        if not req.answers and not req.batch_answers:
            raise invalid("answers", "missing (give at least one answer or batch answer)")
        if len(req.answers) > MAX_ANSWERS:
            raise exhausted("answers", f"{len(req.answers)} answers exceed the limit of {MAX_ANSWERS} per call")
        batch_answers = self._batch_answers(req.batch_answers)
        answers = routing_answers(req.answers)
        with self.manager.use(sid, call=call) as s:
            check_retry_times(answers, int(s.sim.now_ns))
            s.sim.decide_many(answers, batch_answers)  # atomic: every answer is checked before any is applied
            return control_pb2.DecideReply(
                pending_decisions=len(s.sim.pending_decisions()) + len(s.sim.pending_batch_decisions()))

    def _batch_answers(self, msgs: Any) -> list[BatchAnswer]:
        """Engine BatchAnswers from the wire, with wire-level checks (the engine checks the rest)."""
        entries = sum(len(b.schedule) + len(b.preempt) for b in msgs)
        if len(msgs) + entries > MAX_ANSWERS:
            raise exhausted("batch_answers", f"{len(msgs) + entries} answers and entries exceed the limit of "
                            f"{MAX_ANSWERS} per call")
        out = []
        for i, b in enumerate(msgs):
            path = f"batch_answers[{i}]"
            validate.required_text(b.decision_id, f"{path}.decision_id")
            items = []
            for j, item in enumerate(b.schedule):
                validate.required_text(item.request_id, f"{path}.schedule[{j}].request_id")
                validate.token_count(item.tokens, f"{path}.schedule[{j}].tokens")
                items.append(BatchItem(item.request_id, int(item.tokens)))
            for j, rid in enumerate(b.preempt):
                validate.required_text(rid, f"{path}.preempt[{j}]")
            out.append(BatchAnswer(decision_number(b.decision_id, f"{path}.decision_id"), tuple(items),
                                   tuple(b.preempt), bool(b.repeat_decodes)))
        return out

    # ------------------------------------------------------------ state, wake-ups, cluster, summary

    def get_state(self, req: control_pb2.GetStateRequest, call: CallContext) -> control_pb2.GetStateReply:
        sid = validate.session_id(req.session_id)
        with self.manager.use(sid, mutates=False, call=call) as s:
            reply = control_pb2.GetStateReply()
            wire.fill_state(reply.state, s.sim.state(), int(s.sim.now_ns))
            return reply

    def add_wakeup(self, req: control_pb2.AddWakeupRequest, call: CallContext) -> control_pb2.AddWakeupReply:
        sid = validate.session_id(req.session_id)
        validate.non_negative(req.time_ns, "time_ns")
        tag = validate.short_text(req.tag, "tag")
        with self.manager.use(sid, call=call) as s:
            validate.sim_time(req.time_ns, int(s.sim.now_ns), "time_ns")
            s.sim.add_wakeup(req.time_ns, tag)
            return control_pb2.AddWakeupReply()

    def change_cluster(self, req: control_pb2.ChangeClusterRequest,
                       call: CallContext) -> control_pb2.ChangeClusterReply:
        sid = validate.session_id(req.session_id)
        validate.non_negative(req.time_ns, "time_ns")
        validate.enum_value(common_pb2.ClusterAction, req.action, "action")
        client_id = validate.short_text(req.client_id, "client_id")
        client_doc = None
        if req.action == common_pb2.CLUSTER_ACTION_ADD:
            if not req.HasField("client"):
                raise invalid("client", "missing (the new client's spec)")
            if self.config.max_spec_bytes and req.client.ByteSize() > self.config.max_spec_bytes:
                raise exhausted("client", f"{req.client.ByteSize()} bytes exceed the limit of "
                                f"{self.config.max_spec_bytes} bytes of spec")
            client_doc = wire.struct_to_plain(req.client, "client")
            engine.refuse_paths(client_doc, root="client")
            doc_id = client_doc.get("id")
            if client_id and doc_id is not None and doc_id != client_id:
                raise invalid("client.id", f"{doc_id!r} differs from client_id {client_id!r}")
            if client_id:
                client_doc["id"] = client_id
            client_id = client_doc.get("id") or ""
            if not isinstance(client_id, str) or not client_id:
                raise invalid("client_id", "missing (name the new client)")
        else:
            validate.required_text(client_id, "client_id")
            if req.HasField("client"):
                raise invalid("client", "only for action ADD")
        with self.manager.use(sid, call=call) as s:
            validate.sim_time(req.time_ns, int(s.sim.now_ns), "time_ns")
            s.sim.change_cluster(req.time_ns, wire.CLUSTER_ACTIONS[req.action], client_id, client=client_doc)
            return control_pb2.ChangeClusterReply()

    def get_summary(self, req: control_pb2.GetSummaryRequest, call: CallContext) -> control_pb2.GetSummaryReply:
        sid = validate.session_id(req.session_id)
        with self.manager.use(sid, mutates=False, call=call) as s:
            text = wire.to_json(s.sim.summary())
            reply = control_pb2.GetSummaryReply(summary_json=text, now_ns=int(s.sim.now_ns))
        wire.json_to_struct(text, reply.summary)
        return reply
