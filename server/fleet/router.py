"""Routing decisions of the wall-clock fleet answered by an outside router over gRPC.

`RouterDesk` stands where the pacer asks for routing decisions (spec router ``external``). A new
decision is *held* (``Simulation.hold``): only its request waits, the rest of the fleet runs on.
An answer that arrives at wall time w is applied at the simulated time of w (an engine wake-up
stops the pacer's pass exactly there), so the router's latency is simulated time. With no router
seen within the timeout, or no answer by the deadline (decision time + timeout), the built-in round
robin answers instead and the fallback is counted. An answer to a decision already answered (by the
fallback, or by another router connected at the same time) is accepted and ignored (counted as
late), so that an SDK router's loop survives the race; an id that was never held is NOT_FOUND.

`RouterService` is the ``hermes.v1.Simulator`` service cut down to what an SDK router needs
(GetSession, Advance, GetDecisions, Decide, GetState, GetSummary on the one session ``fleet``, as
calls or as commands on a ``Session`` stream), so
``client_sdk`` routers (``ExternalScheduler.run``) run unchanged; Advance does not move the clock
(the wall clock does): it waits until a decision is held, the simulated clock reaches the target,
or a short poll ends (INTERRUPTED: call again), and returns the engine events since the last reply
(arrivals, routings, first tokens, completions, drops; at most ``max_events`` of them, or
``MAX_EVENTS_PER_REPLY``), which the pacer keeps while a router is connected: an SDK router's
``on_events`` sees the fleet's completions. With several routers connected each event goes to one
of them. The other RPCs are UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message_factory import GetMessageClass

from hermes.v1 import common_pb2, control_pb2, session_pb2, simulator_pb2
from sim_engine import Simulation

from ..api import SERVICE, STREAM_METHOD, wire
from ..api.app import host_port, tls_credentials
from ..api.auth import check_authorization
from ..api.service import Undecodable, decoder
from ..api.stepping import check_retry_times, routing_answers
from ..errors import ApiError, invalid, not_found, out_of_range
from .pacer import NS, Pacer

SESSION_ID = "fleet"  # the one session the router listener serves ("" is accepted too)
POLL_S = 1.0  # longest Advance wait with nothing to decide (then INTERRUPTED: call again)
MAX_MESSAGE_BYTES = 4 << 20  # largest request message the listener accepts
MAX_ANSWERS = 10_000  # answers in one Decide call
MAX_CALLS = 256  # calls in flight at once (waiting Advance calls included); past it RESOURCE_EXHAUSTED
CLOSED_MEMORY = 65_536  # answered decision ids remembered, so that a late answer is not "unknown"
EVENT_BUFFER = 65_536  # engine events kept for the routers' Advance replies (beyond it the oldest go, counted)
MAX_EVENTS_PER_REPLY = 10_000  # events in one Advance reply (a caller's max_events may ask for fewer)
SERVED = ("GetSession", "Advance", "GetDecisions", "Decide", "GetState", "GetSummary", "Session")
# a Session stream's commands and the calls that serve them (the rest answer UNIMPLEMENTED in-band)
STREAM_COMMANDS = {"get_session": "GetSession", "advance": "Advance", "get_decisions": "GetDecisions",
                   "decide": "Decide", "get_state": "GetState", "get_summary": "GetSummary"}
ROUTER_HELP = (
    ("hermes_fleet_router_decisions", "Routing decisions answered by the external router."),
    ("hermes_fleet_router_fallbacks", "Routing decisions answered by the built-in round robin because no "
                                      "external router was connected or it did not answer in time."),
    ("hermes_fleet_router_late_answers", "External router answers to decisions already answered (by the "
                                         "fallback after the deadline, or by another router): ignored."),
    ("hermes_fleet_router_events_dropped", "Engine events dropped before a router's Advance took them "
                                           f"(more than {EVENT_BUFFER} waiting)."),
)


class RoundRobin:
    """The built-in answer: each decision's candidates in turn (one cycle per distinct list)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, ...], int] = {}

    def pick(self, candidates: list[str]) -> str | None:
        key = tuple(candidates)
        if not key:
            return None
        i = self._next.get(key, 0)
        self._next[key] = (i + 1) % len(key)
        return key[i]

    def __call__(self, sim: Simulation) -> None:
        """Answer every pending decision (the pacer's hook when no router listener is open)."""
        for d in sim.pending_decisions():
            route(sim, d.decision_id, self.pick(d.candidates))


def route(sim: Simulation, decision_id: int, target: str | None) -> None:
    sim.decide(decision_id, "route", target) if target is not None else sim.decide(decision_id, "drop")


@dataclass
class _Held:
    decision: Any  # the engine's Decision
    deadline_ns: int  # simulated time the fallback answers at


class RouterDesk:
    """The fleet's held routing decisions and the outside router's answers (one asyncio thread)."""

    def __init__(self, pacer: Pacer, timeout_s: float, fallback: RoundRobin | None = None) -> None:
        self.pacer, self.sim = pacer, pacer.sim
        self.timeout_s = timeout_s
        self.fallback = fallback or RoundRobin()
        self.open: dict[int, _Held] = {}  # held and not answered yet
        self._deadlines: deque[tuple[int, int]] = deque()  # (deadline ns, id) in time order (a fixed timeout)
        self._answers: list[tuple[int, int, str, str | None, int | None]] = []  # (at ns, id, action, client, retry)
        self._closed: OrderedDict[int, None] = OrderedDict()  # answered lately (fallback or a router)
        self.seen_wall = -1e18  # wall time of the router's latest call
        self.polling = 0  # Advance calls waiting now
        self.changed = asyncio.Event()  # set when a decision is held
        self.decided = self.fallbacks = self.late = 0
        self.events: deque[Any] = deque()  # engine events for the routers' Advance replies
        self.events_dropped = 0

    @property
    def connected(self) -> bool:
        return self.polling > 0 or self.pacer.clock() - self.seen_wall < self.timeout_s

    def __call__(self, sim: Simulation) -> None:
        """The pacer's hook, at every stop of a pass: apply what is due now, hold what is new."""
        now = sim.now_ns
        while self._answers and self._answers[0][0] <= now:
            _, did, action, client, retry = heapq.heappop(self._answers)
            if did not in sim.held:
                continue  # its request was aborted meanwhile (its caller left)
            if action == "route" and self.pacer.client_status.get(client or "", "active") != "active":
                self._fall_back(did, self.sim.held[did][0])  # the router's pick left the fleet meanwhile
                continue
            sim.decide(did, action, client, retry)
            self.decided += 1
        while self._deadlines and self._deadlines[0][0] <= now:
            did = self._deadlines.popleft()[1]
            if did in self.open:
                held = self.open.pop(did)
                if did in sim.held:  # else its request was aborted meanwhile
                    self._fall_back(did, held.decision)
                self._close(did)
        pending = sim.pending_decisions()
        if not pending:
            return
        if not self.connected:
            for d in pending:
                self._fall_back(d.decision_id, d)
            return
        deadline = now + max(1, int(self.timeout_s * self.pacer.scale * NS))
        for d in pending:
            sim.hold(d.decision_id)
            self.open[d.decision_id] = _Held(d, deadline)
            self._deadlines.append((deadline, d.decision_id))
        sim.add_wakeup(deadline, "router-deadline")
        self.changed.set()

    def note_events(self, events: list) -> None:
        """The engine events of a pacer pass, kept for the next Advance reply while a router is connected
        (as the lockstep server's Advance returns what happened: completions, first tokens, drops ...)."""
        if not self.connected:
            return
        buf = self.events
        buf.extend(events)
        for _ in range(len(buf) - EVENT_BUFFER):
            buf.popleft()
            self.events_dropped += 1

    def take_events(self, bound: int) -> list:
        """The oldest ``bound`` kept events, removed (several routers share one stream of events)."""
        buf = self.events
        return [buf.popleft() for _ in range(min(bound, len(buf)))]

    def _fall_back(self, did: int, d: Any) -> None:
        active = [c for c in d.candidates if self.pacer.client_status.get(c, "active") == "active"]
        route(self.sim, did, self.fallback.pick(active))
        self.fallbacks += 1

    def _close(self, did: int) -> None:
        self._closed[did] = None
        if len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def decide(self, answers: list[tuple[int, str, str | None, int | None]]) -> None:
        """Queue checked answers for the simulated time of now (all were checked by `check`)."""
        at = max(self.sim.now_ns, self.pacer.sim_now_target())
        queued = False
        for did, action, client, retry in answers:
            h = self.open.get(did)
            if h is None or at >= h.deadline_ns:  # answered already, or the fallback answers at the deadline
                self.late += 1
                continue
            del self.open[did]
            self._close(did)
            heapq.heappush(self._answers, (at, did, action, client, retry))
            queued = True
        if queued:
            self.sim.add_wakeup(at, "router-answer")
            self.pacer.wake()

    def check(self, i: int, did: int, action: str, client: str | None) -> None:
        """Raise the gRPC error for an answer that cannot apply (checked before any is queued)."""
        path = f"answers[{i}]"
        if did in self._closed:
            return
        h = self.open.get(did)
        if h is None:
            raise not_found(f"{path}.decision_id", f"no pending decision {did}")
        cands = h.decision.candidates
        if action == "route" and client not in cands:
            if h.decision.stage_kind != "route" and client not in self.pacer.client_status:
                raise not_found(f"{path}.client_id", f"client {client!r} does not exist; "
                                f"candidates: {', '.join(cands)}")
            raise invalid(f"{path}.client_id", f"{client!r} is not a candidate of this decision; "
                          f"candidates: {', '.join(cands)}")

    def exposition(self) -> str:
        out = []
        values = (self.decided, self.fallbacks, self.late, self.events_dropped)
        for (name, text), value in zip(ROUTER_HELP, values, strict=True):
            out.append(f"# HELP {name} {text}\n# TYPE {name} counter\n{name}_total {value}\n")
        return "".join(out)


class RouterService:
    """The decision RPCs of hermes.v1.Simulator on the fleet's one session (grpc.aio, the pacer's loop)."""

    def __init__(self, desk: RouterDesk, spec_name: str, router_policy: str, token: str | None = None) -> None:
        self.desk = desk
        self.spec_name, self.router_policy = spec_name, router_policy
        self._token = token.encode("utf-8", "surrogateescape") if token else None

    async def _enter(self, context: grpc.aio.ServicerContext, session_id: str) -> None:
        """Auth, then the session id; marks the router as seen."""
        if self._token is not None:
            given = dict(context.invocation_metadata() or ()).get("authorization", "")
            reason = check_authorization(given if isinstance(given, str) else given.decode("latin-1"), self._token)
            if reason is not None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        if session_id not in ("", SESSION_ID):
            await _abort(context, not_found("session_id", f"no session {session_id[:64]!r}; the fleet's router "
                                            f"listener serves one session, {SESSION_ID!r}"))
        self.desk.seen_wall = self.desk.pacer.clock()

    def _decisions(self, out: Any) -> None:
        for h in self.desk.open.values():
            wire.fill_decision(out.add(), h.decision)

    async def GetSession(self, request: session_pb2.GetSessionRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        sim = self.desk.sim
        info = session_pb2.SessionInfo(
            session_id=SESSION_ID, spec_name=self.spec_name, seed=sim.spec.seed, router_policy=self.router_policy,
            now_ns=sim.now_ns, pending_decisions=len(self.desk.open), client_ids=[c.id for c in sim.clients])
        return session_pb2.GetSessionReply(session=info)

    async def Advance(self, request: control_pb2.AdvanceRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        desk, sim = self.desk, self.desk.sim
        which = request.WhichOneof("target")
        target = None
        if which == "until_ns":
            if request.until_ns < sim.now_ns:
                await _abort(context, out_of_range("until_ns", f"{request.until_ns} is before the current time "
                                                   f"{sim.now_ns}"))
            target = request.until_ns
        elif which == "by_ns":
            if request.by_ns < 0:
                await _abort(context, invalid("by_ns", f"must be >= 0, got {request.by_ns}"))
            target = sim.now_ns + request.by_ns
        if request.max_events < 0:
            await _abort(context, invalid("max_events", f"must be >= 0, got {request.max_events}"))
        end = time.monotonic() + min(POLL_S, max(0.0, (context.time_remaining() or POLL_S) - 0.05))
        desk.polling += 1
        try:
            while not desk.open and (target is None or sim.now_ns < target) and time.monotonic() < end:
                desk.changed.clear()
                try:
                    await asyncio.wait_for(desk.changed.wait(), min(0.02, max(0.0, end - time.monotonic())))
                except TimeoutError:
                    pass
        finally:
            desk.polling -= 1
            desk.seen_wall = desk.pacer.clock()
        reply = control_pb2.AdvanceReply(time_ns=sim.now_ns)
        bound = min(request.max_events or MAX_EVENTS_PER_REPLY, MAX_EVENTS_PER_REPLY)
        wire.fill_events(reply.events, desk.take_events(bound))
        if desk.open:
            reply.reason = common_pb2.STOP_REASON_DECISION_NEEDED
            self._decisions(reply.decisions)
        elif target is not None and sim.now_ns >= target:
            reply.reason = common_pb2.STOP_REASON_TARGET_REACHED
        else:
            reply.reason = common_pb2.STOP_REASON_INTERRUPTED
        return reply

    async def GetDecisions(self, request: control_pb2.GetDecisionsRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        reply = control_pb2.GetDecisionsReply()
        self._decisions(reply.decisions)
        return reply

    async def Decide(self, request: control_pb2.DecideRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        try:
            answers = self._answers(request)
        except ApiError as e:
            await _abort(context, e)
        self.desk.decide(answers)
        return control_pb2.DecideReply(pending_decisions=len(self.desk.open))

    def _answers(self, request: control_pb2.DecideRequest) -> list[tuple[int, str, str | None, int | None]]:
        """Every answer checked (fields, then against the held decisions) before any is queued."""
        if request.batch_answers:
            raise invalid("batch_answers", "the fleet has no external batching (its clients batch themselves)")
        if not request.answers:
            raise invalid("answers", "missing (give at least one answer)")
        if len(request.answers) > MAX_ANSWERS:
            raise invalid("answers", f"{len(request.answers)} answers exceed the limit of {MAX_ANSWERS} per call")
        answers = routing_answers(request.answers)
        check_retry_times(answers, self.desk.sim.now_ns)
        for i, a in enumerate(answers):
            self.desk.check(i, a.decision_id, a.action, a.client_id)
        return [(a.decision_id, a.action, a.client_id, a.retry_after_ns) for a in answers]

    async def GetState(self, request: control_pb2.GetStateRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        sim = self.desk.sim
        return control_pb2.GetStateReply(state=wire.fill_state(common_pb2.ClusterState(), sim.state(), sim.now_ns))

    async def GetSummary(self, request: control_pb2.GetSummaryRequest, context: Any) -> Any:
        await self._enter(context, request.session_id)
        sim = self.desk.sim
        text = wire.to_json(sim.summary())
        reply = control_pb2.GetSummaryReply(summary_json=text, now_ns=sim.now_ns)
        wire.json_to_struct(text, reply.summary)
        return reply


    async def Session(self, request_iterator: Any, context: Any) -> Any:
        """The served calls as commands on one stream: one Reply per Command, in order; an error is
        the reply's status and the stream goes on (as the lockstep server's stream)."""
        command_context = _CommandContext(context)
        async for cmd in request_iterator:
            if isinstance(cmd, Undecodable):
                reply = simulator_pb2.Reply()
                reply.status.code, reply.status.message = cmd.error.code.value[0], cmd.error.message
                yield reply
                continue
            reply = simulator_pb2.Reply(id=cmd.id)
            key = cmd.WhichOneof("command")
            name = STREAM_COMMANDS.get(key or "")
            try:
                if key is None:
                    raise _CommandFailed(grpc.StatusCode.INVALID_ARGUMENT, "command: missing (set one command)")
                if name is None:
                    raise _CommandFailed(grpc.StatusCode.UNIMPLEMENTED, f"{key}: {_NOT_SERVED}")
                getattr(reply, key).CopyFrom(await getattr(self, name)(getattr(cmd, key), command_context))
            except _CommandFailed as e:
                reply.status.code, reply.status.message = e.code.value[0], e.message
            yield reply


class _CommandFailed(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _CommandContext:
    """A unary call's context for one command of a Session stream: its abort fails the command only."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def invocation_metadata(self) -> Any:
        return self._stream.invocation_metadata()

    def time_remaining(self) -> float | None:
        return self._stream.time_remaining()

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise _CommandFailed(code, message)


async def _abort(context: Any, err: ApiError) -> None:
    await context.abort(err.code, err.message)


_NOT_SERVED = (f"not served by the fleet's router listener, which answers routing decisions only "
               f"({', '.join(SERVED)}; docs/FLEET.md)")


def _unimplemented(name: str) -> Callable[..., Any]:
    message = f"{name}: {_NOT_SERVED}"

    async def refuse(request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return refuse


def _handlers(service: RouterService) -> grpc.GenericRpcHandler:
    """The service's calls with the lockstep server's request decoding: bytes protobuf cannot parse
    get INVALID_ARGUMENT naming ``request`` (in-band on the stream), not grpc's UNKNOWN."""
    handlers = {}
    for method in SERVICE.methods:
        decode = decoder(GetMessageClass(method.input_type))
        encode = GetMessageClass(method.output_type).SerializeToString
        call = getattr(service, method.name) if method.name in SERVED else _unimplemented(method.name)
        if method.name == STREAM_METHOD:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(call, decode, encode)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_decoded(call), decode, encode)
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)


def _decoded(call: Callable[..., Any]) -> Callable[..., Any]:
    async def behavior(request: Any, context: Any) -> Any:
        if isinstance(request, Undecodable):
            await _abort(context, request.error)
        return await call(request, context)

    return behavior


async def start_router_server(service: RouterService, host: str, port: int,
                              tls: tuple[str, str] | None = None) -> tuple[grpc.aio.Server, int]:
    """The router listener on the running loop (over TLS with ``tls`` = (cert, key) PEM paths); returns it
    and its bound port."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.so_reuseport", 0)], maximum_concurrent_rpcs=MAX_CALLS)
    server.add_generic_rpc_handlers((_handlers(service),))
    address = host_port(host, port)
    bound = server.add_secure_port(address, tls_credentials(*tls)) if tls else server.add_insecure_port(address)
    if not bound:
        raise OSError(f"--router-port: cannot bind {address}")
    await server.start()
    return server, bound
