"""One simulated world: clients, a router, a workload and a clock that can be stepped.

This is the object the offline CLI runs to the end and the gRPC server steps in
lockstep: ``advance`` moves the clock (to a time, to the next event, or by a
bounded number of events) and returns every event since the previous call;
``inject`` adds requests; with the ``external`` router the world stops at each
routing decision until ``decide`` answers it.
"""

from __future__ import annotations

import copy
import enum
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import perf
from .errors import AlreadyExistsError, LimitError, NotFoundError, OutOfRangeError, SpecError
from .kernel import PRIO_INPUT, Kernel
from .llm_client import LLMClient
from .request import STATUS_COMPLETED, STATUS_DROPPED, Request, RequestInput, RequestRecords
from .router import make_router
from .spec import ClientSpec, SimSpec
from .workload import ArrivalSource, ClosedLoopSource

NS = 1_000_000_000


class StopReason(enum.Enum):
    TARGET_REACHED = "target_reached"
    DECISION_NEEDED = "decision_needed"
    WAKEUP = "wakeup"
    IDLE = "idle"
    EVENT_BOUND = "event_bound"


class Event(NamedTuple):
    time_ns: int
    kind: str  # arrival routed first_token completed dropped preempted decision wakeup cluster
    request_id: str
    client_id: str
    data: dict | None


@dataclass(frozen=True)
class Decision:
    decision_id: int
    request_id: str
    stage_index: int
    stage_kind: str
    model: str
    candidates: list[str]
    time_ns: int
    prompt_tokens: int
    output_tokens: int


@dataclass
class AdvanceResult:
    time_ns: int
    reason: StopReason
    events: list[Event]
    events_processed: int


@dataclass
class ClientState:
    id: str
    hardware: str
    model: str
    role: str
    status: str
    num_waiting: int
    num_running: int
    kv_used_blocks: int
    kv_total_blocks: int
    kv_usage: float
    running_tokens: int
    waiting_prompt_tokens: int
    est_step_s: float
    prompt_tokens_total: int
    generation_tokens_total: int
    preemptions_total: int
    requests_completed_total: int
    busy_s: float
    energy_j: float


@dataclass
class ClusterState:
    time_ns: int
    in_flight: int
    injected: int
    completed: int
    dropped: int
    pending_decisions: int
    clients: list[ClientState] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Simulation:
    """A simulated cluster with its own clock, driven offline or in lockstep."""

    def __init__(self, spec: SimSpec, record_events: bool = False, record_trace: bool = False):
        self.spec = spec
        root = np.random.SeedSequence(spec.seed)
        s_workload, s_router = root.spawn(2)
        self.kernel = Kernel()
        self.clients: list[LLMClient] = []
        self.client_by_id: dict[str, LLMClient] = {}
        for cs in spec.clients:
            self._add_client(cs, f"clients[{len(self.clients)}]")
        self.router = make_router(spec.router, np.random.default_rng(s_router))
        self.records = RequestRecords()
        self.record_events = record_events
        self.events: list[Event] = []
        self.trace: list[tuple] | None = [] if record_trace else None
        self.pending: dict[int, tuple[Decision, Request]] = {}
        self._decision_seq = 0
        self._halt: StopReason | None = None
        self.injected = 0
        self.completed = 0
        self.dropped = 0
        self._user_ids: set[str] = set()
        base_dir = Path(spec.document["base_dir"]) if spec.document.get("base_dir") else None
        w = spec.workload
        self.source: ArrivalSource | None = None
        self.closed_loop = w.arrival == "closed_loop"
        if w.arrival != "none":
            cls = ClosedLoopSource if self.closed_loop else ArrivalSource
            self.source = cls(w, s_workload, base_dir, spec.max_requests)
            self.default_model = w.model or spec.clients[0].model.name
            if self.closed_loop:
                for _ in range(w.arrival_params["users"]):
                    self._schedule_source(self.source.next_for_user(0))
            else:
                self._schedule_source(self.source.next())

    # ------------------------------------------------------------------ construction

    def _add_client(self, cs: ClientSpec, path: str) -> LLMClient:
        try:
            perf_model = perf.build_perf_model(cs.hardware, cs.model, tp=cs.tp, pp=cs.pp, kind=cs.perf_kind,
                                    **cs.perf_options)
            capacity = perf.kv_capacity_tokens(cs.hardware, cs.model, cs.tp, cs.pp,
                                          cs.scheduler.gpu_memory_utilization)
        except SpecError as e:
            raise SpecError(f"{path}.{e.field}", e.reason) from None
        client = LLMClient(len(self.clients), cs, perf_model, self, capacity)
        self.clients.append(client)
        self.client_by_id[cs.id] = client
        return client

    @property
    def now_ns(self) -> int:
        return self.kernel.now

    # ------------------------------------------------------------------ events

    def _emit(self, kind: str, req: Request | None, client: LLMClient | None, data: dict | None = None) -> None:
        if self.record_events:
            self.events.append(Event(self.kernel.now, kind, self.request_id(req) if req else "",
                                     client.id if client else "", data))

    @staticmethod
    def request_id(req: Request) -> str:
        return req.rid if req.rid is not None else f"#{req.idx}"

    def trace_step(self, client: LLMClient, start: int, dur: int, n_prefill: int, n_dec: int,
                   n_tok: int, k: int = 1) -> None:
        if self.trace is not None:
            self.trace.append((client.index, start, dur, n_prefill, n_dec, n_tok, k))

    # ------------------------------------------------------------------ arrivals and routing

    def _schedule_source(self, item: tuple[int, int, int] | None) -> None:
        if item is not None:
            self.kernel.schedule(item[0], PRIO_INPUT, self._on_source_arrival, item)

    def _new_request(self, arrival_ns: int, prompt: int, output: int, model: str, rid: str | None) -> Request:
        req = Request(self.injected, rid, arrival_ns, prompt, output, model)
        self.injected += 1
        return req

    def _on_source_arrival(self, item: tuple[int, int, int]) -> None:
        t, prompt, output = item
        req = self._new_request(t, prompt, output, self.default_model, None)
        if not self.closed_loop:
            self._schedule_source(self.source.next())
        self._arrive(req)

    def _on_injected_arrival(self, req: Request) -> None:
        self._arrive(req)

    def _arrive(self, req: Request) -> None:
        self._emit("arrival", req, None, {"prompt_tokens": req.prompt, "output_tokens": req.output})
        self._route(req)

    def _candidates(self, req: Request) -> list[LLMClient]:
        return [c for c in self.clients if c.model == req.model and c.status == "active"
                and c.spec.role == "both"]

    def _route(self, req: Request) -> None:
        now = self.kernel.now
        candidates = self._candidates(req)
        if not candidates:
            self.drop(req, None, now, "no_capable_client")
            return
        if self.router is None:
            self._decision_seq += 1
            d = Decision(self._decision_seq, self.request_id(req), 0, "llm", req.model,
                         [c.id for c in candidates], now, req.prompt, req.output)
            self.pending[d.decision_id] = (d, req)
            self._emit("decision", req, None, {"decision_id": d.decision_id})
            self._halt = StopReason.DECISION_NEEDED
            return
        self._send(req, self.router.pick(candidates, req, now), now)

    def _send(self, req: Request, client: LLMClient, now: int) -> None:
        code, _detail = client.rejects(req)
        if code:
            self.drop(req, client, now, code)
            return
        self._emit("routed", req, client)
        client.submit(req, now)

    # ------------------------------------------------------------------ callbacks from clients

    def note_first_token(self, req: Request, client: LLMClient, now: int) -> None:
        if self.record_events:
            self._emit("first_token", req, client, {"ttft_s": (now - req.arrival_ns) / NS})

    def note_preempted(self, req: Request, client: LLMClient, now: int) -> None:
        self._emit("preempted", req, client)

    def stage_done(self, req: Request, client: LLMClient, now: int) -> None:
        """The request's last stage ended on ``client``: it completed."""
        self.completed += 1
        self.records.add(req, STATUS_COMPLETED, client.index, now)
        if self.record_events:
            out = req.output
            ttft = (req.first_token_ns - req.arrival_ns) / NS
            decode_s = (now - req.first_token_ns) / NS
            self._emit("completed", req, client, {
                "prompt_tokens": req.prompt, "output_tokens": out, "ttft_s": ttft,
                "tpot_s": decode_s / (out - 1) if out > 1 else 0.0, "e2e_s": (now - req.arrival_ns) / NS,
                "queue_s": (req.scheduled_ns - req.enqueue_ns) / NS,
                "prefill_s": (req.first_token_ns - req.scheduled_ns) / NS, "decode_s": decode_s,
                "preemptions": req.preemptions, "model": req.model,
            })
        self._after_end(now)

    def drop(self, req: Request, client: LLMClient | None, now: int, reason: str) -> None:
        self.dropped += 1
        self.records.add(req, STATUS_DROPPED, client.index if client else -1, now, reason)
        self._emit("dropped", req, client, {"reason": reason})
        self._after_end(now)

    def _after_end(self, now: int) -> None:
        if self.closed_loop:
            self._schedule_source(self.source.next_for_user(now))

    # ------------------------------------------------------------------ co-simulation API

    def advance(self, until_ns: int | None = None, max_events: int | None = None,
                next_event: bool = False) -> AdvanceResult:
        """Move the clock; see docs/ENGINE_API.md for the stop rules."""
        k = self.kernel
        if until_ns is not None and until_ns < k.now:
            raise OutOfRangeError(f"until_ns: {until_ns} is before the current time {k.now}")
        if max_events is not None and max_events < 1:
            raise SpecError("max_events", "must be >= 1")
        processed = 0
        reason: StopReason | None = StopReason.DECISION_NEEDED if self.pending else None
        heap = k._heap
        if reason is None and next_event:
            if heap:
                t0 = heap[0][0]
                until_ns = t0 if until_ns is None else min(until_ns, t0)
            elif until_ns is None:
                reason = StopReason.IDLE
        self._halt = None
        while reason is None and heap:
            if until_ns is not None and heap[0][0] > until_ns:
                break
            if max_events is not None and processed >= max_events:
                reason = StopReason.EVENT_BOUND
                break
            k.pop_and_run()
            processed += 1
            if self._halt is not None:
                reason = self._halt
        if reason is None:
            if until_ns is not None:
                k.now = until_ns
                reason = StopReason.TARGET_REACHED
            else:
                reason = StopReason.IDLE
        events, self.events = self.events, []
        return AdvanceResult(k.now, reason, events, processed)

    def run(self, progress=None, progress_every: int = 20000) -> None:
        """Run to the end (built-in routers only). ``progress(now_ns, ended, injected)`` is called now and then."""
        if self.router is None:
            raise SpecError("router.policy", "external routing needs a co-simulation client (hermes serve)")
        k = self.kernel
        heap, pop = k._heap, k.pop_and_run
        while heap:
            for _ in range(progress_every):
                if not heap:
                    break
                pop()
            if progress is not None:
                progress(k.now, self.completed + self.dropped, self.injected)
        self.events.clear()

    def inject(self, requests: list[RequestInput]) -> list[str]:
        """Add requests arriving at or after now. Atomic: all are checked before any is added."""
        now = self.kernel.now
        models = {c.model for c in self.clients}
        limit = self.spec.max_requests
        if limit is not None and self.injected + len(requests) > limit:
            raise LimitError(f"requests: session limit of {limit} requests would be exceeded")
        new_ids: set[str] = set()
        for i, r in enumerate(requests):
            path = f"requests[{i}]"
            for name in ("arrival_ns", "prompt_tokens", "output_tokens"):
                v = getattr(r, name)
                if isinstance(v, bool) or not isinstance(v, int):
                    raise SpecError(f"{path}.{name}", f"must be an integer, got {v!r}")
            if r.prompt_tokens < 1:
                raise SpecError(f"{path}.prompt_tokens", f"must be >= 1, got {r.prompt_tokens}")
            if r.output_tokens < 1:
                raise SpecError(f"{path}.output_tokens", f"must be >= 1, got {r.output_tokens}")
            if r.arrival_ns < now:
                raise OutOfRangeError(f"{path}.arrival_ns: {r.arrival_ns} is before the current time {now}")
            model = r.model or self.spec.clients[0].model.name
            if model not in models:
                raise SpecError(f"{path}.model", f"no client serves model {model!r}")
            if r.request_id is not None:
                if not r.request_id or r.request_id.startswith("#"):
                    raise SpecError(f"{path}.request_id", "must be non-empty and not start with '#'")
                if r.request_id in self._user_ids or r.request_id in new_ids:
                    raise AlreadyExistsError(f"{path}.request_id: {r.request_id!r} already exists")
                new_ids.add(r.request_id)
        ids = []
        for r in requests:
            model = r.model or self.spec.clients[0].model.name
            req = self._new_request(r.arrival_ns, r.prompt_tokens, r.output_tokens, model, r.request_id)
            self.kernel.schedule(r.arrival_ns, PRIO_INPUT, self._on_injected_arrival, req)
            ids.append(self.request_id(req))
        self._user_ids |= new_ids
        return ids

    def pending_decisions(self) -> list[Decision]:
        return [d for d, _ in self.pending.values()]

    def decide(self, decision_id: int, action: str = "route", client_id: str | None = None,
               retry_after_ns: int | None = None) -> None:
        """Answer a routing decision: route to a client, defer (ask again later) or drop."""
        if decision_id not in self.pending:
            raise NotFoundError(f"decision_id: no pending decision {decision_id}")
        decision, req = self.pending[decision_id]
        now = self.kernel.now
        if action == "route":
            if client_id not in decision.candidates:
                known = client_id in self.client_by_id
                raise SpecError("client_id", f"client {client_id!r} "
                                f"{'cannot serve this stage' if known else 'does not exist'}; "
                                f"candidates: {', '.join(decision.candidates)}")
            del self.pending[decision_id]
            self._send(req, self.client_by_id[client_id], now)
        elif action == "defer":
            delay = 1_000_000 if retry_after_ns is None else retry_after_ns
            if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
                raise SpecError("retry_after_ns", f"must be a positive integer, got {delay!r}")
            del self.pending[decision_id]
            self.kernel.schedule(now + delay, PRIO_INPUT, self._route, req)
        elif action == "drop":
            del self.pending[decision_id]
            self.drop(req, None, now, "external_drop")
        else:
            raise SpecError("action", f"unknown action {action!r}; expected route, defer or drop")

    def add_wakeup(self, time_ns: int, tag: str = "") -> None:
        if time_ns < self.kernel.now:
            raise OutOfRangeError(f"time_ns: {time_ns} is before the current time {self.kernel.now}")
        self.kernel.schedule(time_ns, PRIO_INPUT, self._on_wakeup, tag)

    def _on_wakeup(self, tag: str) -> None:
        if self.record_events:
            self.events.append(Event(self.kernel.now, "wakeup", "", "", {"tag": tag}))
        self._halt = StopReason.WAKEUP

    def change_cluster(self, time_ns: int, action: str, client_id: str, client: dict | None = None) -> None:
        """Add, drain, remove or fail a client at a simulated time (validated now, applied then)."""
        if time_ns < self.kernel.now:
            raise OutOfRangeError(f"time_ns: {time_ns} is before the current time {self.kernel.now}")
        if action == "add":
            if client_id in self.client_by_id:
                raise AlreadyExistsError(f"client_id: client {client_id!r} already exists")
            from .spec import _clients

            doc = dict(client or {})
            doc["id"] = client_id
            doc.pop("replicas", None)
            spec = _clients([doc])[0]
            self._add_client(spec, "client")  # validates now; inactive until time_ns
            self.client_by_id[client_id].status = "pending"
        elif action in ("drain", "remove", "fail"):
            if client_id not in self.client_by_id:
                raise NotFoundError(f"client_id: no client {client_id!r}")
        else:
            raise SpecError("action", f"unknown action {action!r}; expected add, drain, remove or fail")
        self.kernel.schedule(time_ns, PRIO_INPUT, self._apply_change, (action, client_id))

    def _apply_change(self, change: tuple[str, str]) -> None:
        action, cid = change
        client = self.client_by_id[cid]
        now = self.kernel.now
        if action == "add":
            client.status = "active"
        elif action in ("drain", "remove"):
            if client.status != "failed":
                client.status = "draining" if action == "drain" else "removed"
        else:
            for req in client.fail(now):
                self.drop(req, client, now, "client_failed")
        if self.record_events:
            self.events.append(Event(now, "cluster", "", cid, {"action": action}))

    # ------------------------------------------------------------------ views

    def state(self) -> ClusterState:
        now = self.kernel.now
        st = ClusterState(now, self.injected - self.completed - self.dropped, self.injected,
                          self.completed, self.dropped, len(self.pending))
        for c in self.clients:
            if c.status == "removed" and c.is_idle():
                continue
            used = c.kv_used_now(now)
            st.clients.append(ClientState(
                id=c.id, hardware=c.spec.hardware.name, model=c.model, role=c.spec.role, status=c.status,
                num_waiting=len(c.waiting), num_running=len(c.decoding) + len(c.prefilling),
                kv_used_blocks=used, kv_total_blocks=c.total_blocks,
                kv_usage=used / c.total_blocks if c.total_blocks else 0.0,
                running_tokens=c.sum_base + len(c.decoding) * c.G + sum(r.prefilled for r in c.prefilling),
                waiting_prompt_tokens=c.waiting_prompt_tokens(), est_step_s=c.last_step_s,
                prompt_tokens_total=c.prompt_tokens_total, generation_tokens_total=c.generation_tokens_total,
                preemptions_total=c.preemptions_total, requests_completed_total=c.completed_total,
                busy_s=c.busy_ns / NS, energy_j=c.energy_j,
            ))
        return st

    def summary(self) -> dict[str, Any]:
        from .summary import summarize

        return summarize(self)

    def request_records(self) -> dict[str, np.ndarray]:
        return self.records.arrays()

    def is_done(self) -> bool:
        return not self.kernel._heap and not self.pending

    # ------------------------------------------------------------------ what-if copies

    def fork(self) -> Simulation:
        """An independent copy (perf models, which hold only memoised costs, are shared)."""
        memo = {id(c.perf): c.perf for c in self.clients}
        return copy.deepcopy(self, memo)

    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(blob: bytes) -> Simulation:
        sim = pickle.loads(blob)
        if not isinstance(sim, Simulation):
            raise SpecError("snapshot", "not a HERMES simulation snapshot")
        return sim
