"""One simulated world: clients, a router, a workload and a clock that can be stepped.

This is the object the offline CLI runs to the end and the gRPC server steps in
lockstep: ``advance`` moves the clock (to a time, to the next event, or by a
bounded number of events) and returns every event since the previous call;
``inject`` adds requests; with the ``external`` router the world stops at each
routing decision until ``decide`` answers it, and an LLM client with ``batching:
external`` stops it at each step boundary until ``decide_batch`` answers.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from .client_api import Client, ClientStatus, llm_counters
from .errors import (
    AlreadyExistsError,
    LimitError,
    NotFoundError,
    OutOfRangeError,
    SpecError,
    UnknownReferenceError,
)
from .external_batch import batch_view, check_batch
from .kernel import PRIO_INPUT, Kernel
from .kv_tiers import KVHierarchy, cached_prefix_tokens, prefix_tokens, scope_keys
from .llm_client import LLMClient
from .network import Network, Topology
from .pipeline import STAGE_ROLES, Stage, choose_model, output_bytes, route_options
from .request import (
    STATUS_ABORTED,
    STATUS_COMPLETED,
    STATUS_DROPPED,
    Request,
    RequestInput,
    RequestRecords,
    StageRecords,
)
from .router import make_router
from .spec import ClientSpec, SimSpec, build_client_parts
from .task_clients import BatchClient, GenericClient
from .units import MAX_TIME_NS, NS_PER_S
from .views import (
    GROUP_CODES,
    KIND_CODES,
    AdvanceResult,
    BatchAnswer,
    BatchDecision,
    ClientState,
    ClusterState,
    Decision,
    DecisionAnswer,
    Event,
    StopReason,
)
from .workload import ArrivalSource, ClosedLoopSource, LengthSampler

PINNED_KINDS = ("llm", "prefill", "decode")  # stages a pinned request skips the router for
DEFAULT_RETRY_NS = 1_000_000  # a deferred decision is asked again after 1 ms unless told otherwise


def _check_horizon(time_ns: int | None, field_name: str) -> None:
    if time_ns is not None and time_ns > MAX_TIME_NS:
        raise OutOfRangeError(f"{field_name}: {time_ns} is past the simulation horizon {MAX_TIME_NS} ns")


class Simulation:
    """A simulated cluster with its own clock, driven offline or in lockstep."""

    def __init__(self, spec: SimSpec, record_events: bool = False, record_trace: bool = False):
        self.spec = spec
        root = np.random.SeedSequence(spec.seed)
        s_workload, s_router = root.spawn(2)
        s_stages, s_kv, s_clients = root.spawn(3)  # spawned after: the first two streams never move
        self._client_seeds = s_clients
        self.kernel = Kernel()
        self.network = Network(self.kernel)
        self.topology = Topology(self.network, spec.topology)
        self.clients: list[Client] = []
        self.client_by_id: dict[str, Client] = {}
        self._capable: dict[tuple[str, str | None], tuple[int, list[Client]]] = {}  # see _candidates
        for cs in spec.clients:
            self._add_client(cs, f"clients[{len(self.clients)}]")
        self.router = make_router(spec.router, np.random.default_rng(s_router))
        self.stage_rng = np.random.default_rng(s_stages)
        self.kv = KVHierarchy(list(spec.kv_tiers), spec.kv_mode, np.random.default_rng(s_kv)) \
            if spec.kv_tiers else None
        self.records = RequestRecords()
        self.stage_records = StageRecords()
        self.record_events = record_events
        self.events: list[Event] = []
        self.trace: list[tuple] | None = [] if record_trace else None
        self.pending: dict[int, tuple[Decision, Request]] = {}
        self.held: dict[int, tuple[Decision, Request]] = {}  # set aside by `hold`: answerable, not blocking
        self.batch_pending: dict[int, tuple[BatchDecision, LLMClient]] = {}
        self._decision_seq = 0
        self._halt: StopReason | None = None
        self.injected = 0
        self.completed = 0
        self.dropped = 0
        self.aborted = 0
        self._live: dict[str, Request] = {}  # request id -> request, from injection (or arrival) to its end
        self._user_ids: set[str] = set()
        self._thinking_samplers: dict[str, LengthSampler] = {}
        llm_models = [c.model.name for c in spec.clients if c.is_llm]
        self.default_model = spec.workload.model or llm_models[0]
        self._mix_names = list(spec.workload.pipelines)
        weights = np.asarray([spec.workload.pipelines[n] for n in self._mix_names], dtype=float)
        self._mix_cum = np.cumsum(weights / weights.sum())
        base_dir = spec.data_dir
        w = spec.workload
        self.source: ArrivalSource | None = None
        self.closed_loop = w.arrival == "closed_loop"
        if w.arrival != "none":
            cls = ClosedLoopSource if self.closed_loop else ArrivalSource
            self.source = cls(w, s_workload, base_dir, spec.max_requests)
            if self.closed_loop:
                for _ in range(w.arrival_params["users"]):
                    self._schedule_source(self.source.next_for_user(0))
            else:
                self._schedule_source(self.source.next())

    # ------------------------------------------------------------------ construction

    def _add_client(self, cs: ClientSpec, path: str):
        """Build one client; its spec was checked by the validator (``build_client_parts``)."""
        index = len(self.clients)
        perf_model, capacity = build_client_parts(cs, path)
        if cs.is_llm:
            client = LLMClient(index, cs, perf_model, self, capacity)
        elif cs.role in ("embedding", "retrieval"):
            client = BatchClient(index, cs, self, perf_model)
        else:
            seed = self._client_seeds.spawn(1)[0]
            client = GenericClient(index, cs, self, np.random.default_rng(seed))
        self.clients.append(client)
        self.client_by_id[cs.id] = client
        return client

    @property
    def now_ns(self) -> int:
        return self.kernel.now

    # ------------------------------------------------------------------ events

    def _emit(self, kind: str, req: Request | None, client, data: dict | None = None) -> None:
        if self.record_events:
            self.events.append(Event(self.kernel.now, kind, self.request_id(req) if req else "",
                                     client.id if client else "", data))

    @staticmethod
    def request_id(req: Request) -> str:
        return req.rid if req.rid is not None else f"#{req.idx}"

    def trace_step(self, client, start: int, dur: int, n_prefill: int, n_dec: int,
                   n_tok: int, k: int = 1) -> None:
        if self.trace is not None:
            self.trace.append((client.index, start, dur, n_prefill, n_dec, n_tok, k))

    # ------------------------------------------------------------------ arrivals

    def _schedule_source(self, item: tuple[int, int, int] | None) -> None:
        if item is not None:
            self.kernel.schedule(item[0], PRIO_INPUT, self._on_source_arrival, item)

    def _new_request(self, arrival_ns: int, prompt: int, output: int, model: str, rid: str | None,
                     pipeline: str | None = None) -> Request:
        req = Request(self.injected, rid, arrival_ns, prompt, output, model)
        self.injected += 1
        self._live[rid if rid is not None else f"#{req.idx}"] = req
        if pipeline is None:
            pipeline = self._mix_names[int(np.searchsorted(self._mix_cum, self.stage_rng.random(), "right"))] \
                if len(self._mix_names) > 1 else self._mix_names[0]
        req.pipeline = self.spec.pipelines[pipeline]
        w = self.spec.workload
        if w.prefix_tokens:
            group = int(self.stage_rng.integers(w.prefix_groups)) if w.prefix_groups else None
            req.prefix_key = f"g{group}" if group is not None else f"r{req.idx}"
            req.prefix_len = cached_prefix_tokens(prompt, req.pipeline, w.prefix_tokens)
        reasoning = next((st.params["reasoning"] for st in req.pipeline if "reasoning" in st.params), None)
        if reasoning is not None:
            thinking = self._thinking_tokens(reasoning, output)
            req.target = output + thinking
            steps = reasoning.get("steps", 1)
            if steps > 1:  # thinking split evenly over the loop's steps; the answer comes last
                req.segments = tuple(max(1, thinking * (i + 1) // steps) for i in range(steps - 1)) + (req.target,)
                req.target = req.segments[0]
        return req

    def _thinking_tokens(self, reasoning: dict, output: int) -> int:
        spec = reasoning.get("thinking_tokens")
        if spec is None:
            return int(round(reasoning["thinking_multiplier"] * output))
        key = str(spec)
        sampler = self._thinking_samplers.get(key)
        if sampler is None:
            sampler = self._thinking_samplers[key] = LengthSampler(spec, self.stage_rng, self.spec.data_dir,
                                                                  "thinking_tokens")
        return sampler.sample()

    def _on_source_arrival(self, item: tuple[int, int, int]) -> None:
        t, prompt, output = item
        req = self._new_request(t, prompt, output, self.default_model, None)
        if not self.closed_loop:
            self._schedule_source(self.source.next())
        self._arrive(req)

    def _on_injected_arrival(self, req: Request) -> None:
        if not req.aborted:
            self._arrive(req)

    def _arrive(self, req: Request) -> None:
        if self.record_events:
            data = {"prompt_tokens": req.prompt, "output_tokens": req.output}
            if req.target != req.output or req.segments:  # reasoning: the thinking tokens that precede the answer
                data["thinking_tokens"] = (req.segments[-1] if req.segments else req.target) - req.output
            self._emit("arrival", req, None, data)
        self._start_stage(req)

    # ------------------------------------------------------------------ the stage machine

    def _start_stage(self, req: Request) -> None:
        """Make the request's current stage ready: route it (or finish the request)."""
        now = self.kernel.now
        if req.stage >= len(req.pipeline):
            self._complete(req, now)
            return
        st = req.pipeline[req.stage]
        req.stage_ready_ns = now
        req.stage_start_ns = -1
        req.bytes_in = 0
        if st.kind == "decode" and req.generated >= req.target:
            self.stage_done(req, None, now)  # the prefill produced every token asked for
            return
        self._route_stage(req)

    def _route_stage(self, req: Request) -> None:
        """Pick the client (or, for a route stage, the model) of the request's current stage."""
        if req.aborted:
            return  # a deferred decision asked again after an abort
        now = self.kernel.now
        st = req.pipeline[req.stage]
        if st.kind == "route":
            self._ask_route(req, st, route_options(st), now)
            return
        pinned = req.prev_client if req.stage and req.pipeline[req.stage - 1].kind == "kv_retrieval" else None
        segment = st.params.get("segment", 0)
        if segment:  # the next thinking step of a loop: same client, earlier context still cached
            pinned = req.home
            req.target = req.segments[segment]
            req.cached = req.loop_context
        if pinned is not None and pinned.status != ClientStatus.ACTIVE:  # gone: start afresh elsewhere
            pinned, req.cached = None, 0
        if pinned is None and req.pin is not None and st.kind in PINNED_KINDS \
                and req.pin.spec.role in STAGE_ROLES[st.kind]:
            if req.pin.status != ClientStatus.ACTIVE:
                self.drop(req, req.pin, now, "pinned_client_unavailable")
                return
            pinned = req.pin
        candidates = [pinned] if pinned is not None else self._candidates(req, st)
        if not candidates:
            self.drop(req, None, now, "no_capable_client")
            return
        if self.router is None and pinned is None:
            self._ask_route(req, st, [c.id for c in candidates], now)
            return
        self._send(req, candidates[0] if pinned else self.router.pick(candidates, req, now), now)

    def _candidates(self, req: Request, st: Stage) -> list:
        if st.kind == "kv_retrieval":  # the KV goes to the client that will run the next (LLM) stage
            st = req.pipeline[req.stage + 1]
        needs_model = st.kind not in ("search", "generic")
        model = (st.params["model"] if st.kind in ("embed", "rerank") else req.model) if needs_model else None
        # the clients whose role and model fit, kept until a client is added (roles and models never change)
        known = self._capable.get((st.kind, model))
        if known is None or known[0] != len(self.clients):
            roles = STAGE_ROLES[st.kind]
            known = self._capable[st.kind, model] = (len(self.clients), [
                c for c in self.clients if c.spec.role in roles and (not needs_model or c.model == model)])
        return [c for c in known[1] if c.status == ClientStatus.ACTIVE]

    def _ask_route(self, req: Request, st: Stage, options: list[str], now: int) -> None:
        """External routing: stop and ask. A route stage's options are model names."""
        if st.kind == "route" and self.router is not None:
            self._finish_route(req, st, choose_model(st, req, self.stage_rng), now)
            return
        self._decision_seq += 1
        d = Decision(self._decision_seq, self.request_id(req), req.stage, st.kind, req.model, options, now,
                     req.prompt, req.output, req.prefix_key)
        self.pending[d.decision_id] = (d, req)
        self._emit("decision", req, None, {"decision_id": d.decision_id, "stage": st.kind})
        self._halt = StopReason.DECISION_NEEDED

    def _finish_route(self, req: Request, st: Stage, model: str, now: int) -> None:
        req.model = model
        delay = round(GenericClient.draw_latency_s(st.params["latency"], self.stage_rng) * NS_PER_S)
        self.kernel.schedule(now + delay, PRIO_INPUT, self._route_stage_done, req)

    def _route_stage_done(self, req: Request) -> None:
        if not req.aborted:
            self.stage_done(req, None, self.kernel.now)

    def _send(self, req: Request, client, now: int) -> None:
        """Move the stage's input to ``client`` (over the network when it comes from elsewhere), then queue it."""
        st = req.pipeline[req.stage]
        if st.kind in ("llm", "prefill", "decode"):
            req.mode = st.kind
            code, _detail = client.rejects(req)
            if code:
                self.drop(req, client, now, code)
                return
        if self.record_events:
            self._emit("routed", req, client, {"stage": st.kind})
        if st.kind == "kv_retrieval":
            self._fetch_kv(req, st, client, now)
            return
        nbytes = req.out_bytes
        if st.params.get("kv_transfer") == "layerwise":
            # KV streamed layer by layer while the prefill ran: only the last layer's share is left
            nbytes = -(-nbytes // client.spec.model.n_layers)
        src = req.prev_client
        if nbytes and src is not None and src is not client:
            req.bytes_in = nbytes
            path = self.topology.path(src.spec.node, src.spec.rack, client.spec.node, client.spec.rack)
            req.transfer = self.network.start(path, nbytes, self._delivered, (req, client))
        else:
            client.submit(req, now)

    def _delivered(self, arg: tuple[Request, Any]) -> None:
        req, client = arg
        if client.status == ClientStatus.FAILED:
            self.drop(req, client, self.kernel.now, "client_failed")
            return
        client.submit(req, self.kernel.now)

    # ------------------------------------------------------------------ KV retrieval

    @staticmethod
    def _scope_keys(client) -> dict[str, str]:
        return scope_keys(client.id, client.spec.node, client.spec.rack)

    def _fetch_kv(self, req: Request, st: Stage, client, now: int) -> None:
        """Look the prefix up in the memory hierarchy; a hit is fetched over the tier's link, a miss recomputes."""
        tokens = prefix_tokens(req.prompt, st.params.get("prefix_tokens"), self.spec.workload.prefix_tokens)
        if req.prefix_key is None:
            req.prefix_key = f"r{req.idx}"
        req.prefix_len = tokens
        nbytes = int(tokens * client.spec.model.kv_bytes_per_token())
        tier_id, inst = self.kv.lookup(self._scope_keys(client), req.prefix_key, nbytes) if tokens else (None, None)
        req.cached = 0
        if tier_id is None:
            self.stage_done(req, client, now)
            return
        tier = next(t for t in self.spec.kv_tiers if t.id == tier_id)
        path = [self.topology.link(f"tier:{tier_id}:{inst}", tier.bandwidth_gbs, tier.latency_us)]
        if tier.scope in ("rack", "global"):
            path.append(self.topology.nic(client.spec.node))
        req.bytes_in = nbytes
        req.stage_start_ns = now
        req.transfer = self.network.start(path, nbytes, self._kv_fetched, (req, client, tokens))

    def _kv_fetched(self, arg: tuple[Request, Any, int]) -> None:
        req, client, tokens = arg
        req.cached = tokens
        self.stage_done(req, client, self.kernel.now)

    # ------------------------------------------------------------------ callbacks from clients

    def note_first_token(self, req: Request, client, now: int) -> None:
        if self.kv is not None and req.prefix_key is not None and not req.cached:
            tokens = cached_prefix_tokens(req.prompt, req.pipeline, self.spec.workload.prefix_tokens)
            if tokens:
                self.kv.insert(self._scope_keys(client), req.prefix_key,
                               int(tokens * client.spec.model.kv_bytes_per_token()))
        if self.record_events:
            self._emit("first_token", req, client, {"ttft_s": (now - req.arrival_ns) / NS_PER_S})

    def note_preempted(self, req: Request, client, now: int) -> None:
        self._emit("preempted", req, client)

    def stage_done(self, req: Request, client, now: int) -> None:
        """The request's current stage ended (on ``client``, or in the router): start the next one."""
        st = req.pipeline[req.stage]
        self.stage_records.add(req, KIND_CODES[st.kind], GROUP_CODES[st.group],
                               client.index if client is not None else -1, now)
        if client is not None:
            nxt = req.pipeline[req.stage + 1] if req.stage + 1 < len(req.pipeline) else None
            req.out_bytes = output_bytes(st, nxt, req.prompt, req.generated, client.spec.model)
            req.prev_client = client
        if st.kind == "llm":
            req.home, req.loop_context = client, req.prompt + req.generated - 1
        elif st.kind == "generic" and st.params.get("adds_tokens"):
            req.prompt += st.params["tokens"]  # the tool's output joins the context
        if st.kind in ("search", "rerank") and st.params.get("added_tokens"):
            req.prompt += st.params["added_tokens"]  # retrieved documents join the prompt
        req.stage += 1
        self._start_stage(req)

    def _complete(self, req: Request, now: int) -> None:
        self.completed += 1
        del self._live[self.request_id(req)]
        client = req.client
        self.records.add(req, STATUS_COMPLETED, client.index if client is not None else -1, now)
        if self.record_events:
            out = req.generated
            ttft = (req.first_token_ns - req.arrival_ns) / NS_PER_S
            decode_s = (now - req.first_token_ns) / NS_PER_S
            self._emit("completed", req, client, {
                "prompt_tokens": req.prompt, "output_tokens": out, "ttft_s": ttft,
                "tpot_s": decode_s / (out - 1) if out > 1 else 0.0, "e2e_s": (now - req.arrival_ns) / NS_PER_S,
                "queue_s": (req.scheduled_ns - req.arrival_ns) / NS_PER_S,
                "prefill_s": (req.first_token_ns - req.scheduled_ns) / NS_PER_S, "decode_s": decode_s,
                "preemptions": req.preemptions, "model": req.model,
            })
        self._after_end(now)

    def drop(self, req: Request, client, now: int, reason: str) -> None:
        self.dropped += 1
        del self._live[self.request_id(req)]
        self.records.add(req, STATUS_DROPPED, client.index if client else -1, now, reason)
        self._emit("dropped", req, client, {"reason": reason})
        self._after_end(now)

    def abort(self, request_id: str) -> bool:
        """The caller gave up on a request: remove it wherever it is and free what it holds.

        Wherever it is: not yet arrived, waiting for a routing decision, in a network transfer
        (cancelled, its bandwidth freed), queued, prefilling or decoding on an LLM client (its KV
        blocks and prefix-cache references freed, its reasoning branches cancelled, a closed-form
        run cut at now) or on a task client. It ends now with status aborted, its tokens so far
        recorded; no event for it fires afterwards. Idempotent: False when ``request_id`` is
        unknown or already ended.
        """
        req = self._live.pop(request_id, None) if isinstance(request_id, str) else None
        if req is None:
            return False
        now = self.kernel.now
        req.aborted = True
        for decisions in (self.pending, self.held):
            for did in [did for did, (_, r) in decisions.items() if r is req]:
                del decisions[did]
        if req.transfer:
            self.network.cancel(req.transfer)
        client = req.client
        if client is not None:
            if isinstance(client, LLMClient) and client.asking:
                view = self.batch_pending[client.asking][0]
                if any(v.request_id == request_id for v in view.waiting + view.running):
                    del self.batch_pending[client.asking]  # its view showed the request: ask again without it
                    client.asking = 0
            client.cancel(req, now)
        self.aborted += 1
        self.records.add(req, STATUS_ABORTED, client.index if client is not None else -1, now)
        self._emit("aborted", req, client, {"output_tokens": req.generated})
        self._after_end(now)
        return True

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
        _check_horizon(until_ns, "until_ns")
        if max_events is not None and max_events < 1:
            raise SpecError("max_events", "must be >= 1")
        processed = 0
        reason: StopReason | None = StopReason.DECISION_NEEDED if self.pending or self.batch_pending else None
        if reason is None and next_event:
            t0 = k.next_time()
            if t0 is not None:
                until_ns = t0 if until_ns is None else min(until_ns, t0)
            elif until_ns is None:
                reason = StopReason.IDLE
        self._halt = None
        if reason is None:
            processed, why = k.run_until(until_ns, max_events, self._halted)
            if why == "halted":
                reason = self._halt
            elif why == "bound":
                reason = StopReason.EVENT_BOUND
            elif until_ns is not None:
                k.move_clock(until_ns)
                reason = StopReason.TARGET_REACHED
            else:
                reason = StopReason.IDLE
        events, self.events = self.events, []
        return AdvanceResult(k.now, reason, events, processed)

    def _halted(self) -> bool:
        return self._halt is not None

    def run(self, progress=None, progress_every: int = 20000) -> None:
        """Run to the end (built-in routers only). ``progress(now_ns, ended, injected)`` is called now and then."""
        if self.router is None:
            raise SpecError("router.policy", "external routing needs a co-simulation client (hermes serve)")
        self.spec.refuse_external_batching("an offline run")
        k = self.kernel
        while len(k):
            k.run_batch(progress_every)
            if progress is not None:
                progress(k.now, self.completed + self.dropped + self.aborted, self.injected)
        self.events.clear()

    def inject(self, requests: list[RequestInput]) -> list[str]:
        """Add requests arriving at or after now. Atomic: all are checked before any is added."""
        now = self.kernel.now
        models = {c.model for c in self.clients if c.spec.is_llm}
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
            _check_horizon(r.arrival_ns, f"{path}.arrival_ns")
            model = r.model or self.default_model
            if model not in models:
                raise SpecError(f"{path}.model", f"no client serves model {model!r}")
            if r.pipeline is not None and r.pipeline not in self.spec.pipelines:
                raise SpecError(f"{path}.pipeline", f"no pipeline {r.pipeline!r}; defined: "
                                f"{', '.join(self.spec.pipelines)}")
            if r.client_id is not None:
                pin = self.client_by_id.get(r.client_id) if isinstance(r.client_id, str) else None
                if pin is None or not pin.spec.is_llm:
                    raise SpecError(f"{path}.client_id", f"no LLM client {r.client_id!r}")
                if pin.model != model:
                    raise SpecError(f"{path}.client_id", f"client {r.client_id!r} serves {pin.model!r}, not {model!r}")
            if r.request_id is not None:
                if not r.request_id or r.request_id.startswith("#"):
                    raise SpecError(f"{path}.request_id", "must be non-empty and not start with '#'")
                if r.request_id in self._user_ids or r.request_id in new_ids:
                    raise AlreadyExistsError(f"{path}.request_id: {r.request_id!r} already exists")
                new_ids.add(r.request_id)
        ids = []
        for r in requests:
            req = self._new_request(r.arrival_ns, r.prompt_tokens, r.output_tokens, r.model or self.default_model,
                                    r.request_id, r.pipeline)
            if r.prefix_key is not None:
                req.prefix_key = r.prefix_key
                req.prefix_len = cached_prefix_tokens(req.prompt, req.pipeline, self.spec.workload.prefix_tokens)
            if r.client_id is not None:
                req.pin = self.client_by_id[r.client_id]
            self.kernel.schedule(r.arrival_ns, PRIO_INPUT, self._on_injected_arrival, req)
            ids.append(self.request_id(req))
        self._user_ids |= new_ids
        return ids

    def pending_decisions(self) -> list[Decision]:
        return [d for d, _ in self.pending.values()]

    def hold(self, decision_id: int) -> None:
        """Set a pending routing decision aside: ``advance`` runs on (only its request waits) and
        ``decide`` answers it later, at the simulated time of that call. The wall-clock front holds
        a decision while an outside router thinks, so the rest of the fleet keeps running."""
        if isinstance(decision_id, bool) or decision_id not in self.pending:
            raise NotFoundError(f"decision_id: no pending decision {decision_id}")
        self.held[decision_id] = self.pending.pop(decision_id)

    def decide(self, decision_id: int, action: str = "route", client_id: str | None = None,
               retry_after_ns: int | None = None) -> None:
        """Answer one routing decision: route to a client, defer (ask again later) or drop."""
        answer = DecisionAnswer(decision_id, action, client_id, retry_after_ns)
        self._apply_answer(self._check_answer(answer, ""))

    def decide_many(self, answers: Sequence[DecisionAnswer], batch_answers: Sequence[BatchAnswer] = ()) -> None:
        """Answer several routing and batch decisions at once. Atomic: all are checked before any is applied.

        Errors name ``answers[i].<field>`` or ``batch_answers[i].<field>``; when one is raised,
        nothing has changed.
        """
        seen: set[int] = set()
        plan = []
        for i, answer in enumerate(answers):
            if not isinstance(answer, DecisionAnswer):
                raise SpecError(f"answers[{i}]", f"must be a DecisionAnswer, got {type(answer).__name__}")
            if answer.decision_id in seen:
                raise SpecError(f"answers[{i}].decision_id", f"decision {answer.decision_id} is answered twice")
            seen.add(answer.decision_id)
            plan.append(self._check_answer(answer, f"answers[{i}]."))
        batch_plans = []
        for i, answer in enumerate(batch_answers):
            path = f"batch_answers[{i}]"
            if not isinstance(answer, BatchAnswer):
                raise SpecError(path, f"must be a BatchAnswer, got {type(answer).__name__}")
            did = answer.decision_id
            if isinstance(did, bool) or did not in self.batch_pending:
                raise NotFoundError(f"{path}.decision_id: no pending batch decision {did}")
            if did in seen:
                raise SpecError(f"{path}.decision_id", f"decision {did} is answered twice")
            seen.add(did)
            client = self.batch_pending[did][1]
            try:
                batch_plans.append((did, client, check_batch(client, answer, self.request_id)))
            except SpecError as e:
                raise type(e)(f"{path}.{e.field}", e.reason) from None
        # applying an answer never invalidates another: batch answers touch their own client, routing
        # answers their own request. Batch answers go first, so that a request routed to a client that
        # was asking finds it answered and makes it plan again.
        for did, client, batch_plan in batch_plans:
            del self.batch_pending[did]
            client.apply_batch(batch_plan, self.kernel.now)
        for step in plan:
            self._apply_answer(step)

    def _check_answer(self, a: DecisionAnswer, path: str) -> tuple[DecisionAnswer, Decision, Request, int]:
        """Validate one answer against the pending decisions; returns what applying it needs."""
        entry = None if isinstance(a.decision_id, bool) else self.pending.get(a.decision_id) or \
            self.held.get(a.decision_id)
        if entry is None:
            raise NotFoundError(f"{path}decision_id: no pending decision {a.decision_id}")
        decision, req = entry
        delay = 0
        if a.action == "route":
            if a.client_id not in decision.candidates:
                if decision.stage_kind == "route":  # the options are model names
                    raise SpecError(f"{path}client_id", f"model {a.client_id!r} is not an option of this route "
                                    f"stage; options: {', '.join(decision.candidates)}")
                if a.client_id not in self.client_by_id:
                    raise UnknownReferenceError(f"{path}client_id", f"client {a.client_id!r} does not exist; "
                                                f"candidates: {', '.join(decision.candidates)}")
                raise SpecError(f"{path}client_id", f"client {a.client_id!r} cannot serve this stage; "
                                f"candidates: {', '.join(decision.candidates)}")
        elif a.action == "defer":
            delay = DEFAULT_RETRY_NS if a.retry_after_ns is None else a.retry_after_ns
            if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
                raise SpecError(f"{path}retry_after_ns", f"must be a positive integer, got {delay!r}")
            _check_horizon(self.kernel.now + delay, f"{path}retry_after_ns")
        elif a.action != "drop":
            raise SpecError(f"{path}action", f"unknown action {a.action!r}; expected route, defer or drop")
        return a, decision, req, delay

    def _apply_answer(self, step: tuple[DecisionAnswer, Decision, Request, int]) -> None:
        a, decision, req, delay = step
        now = self.kernel.now
        if self.pending.pop(a.decision_id, None) is None:
            del self.held[a.decision_id]
        if a.action == "route" and decision.stage_kind == "route":
            self._finish_route(req, req.pipeline[req.stage], a.client_id, now)
        elif a.action == "route":
            self._send(req, self.client_by_id[a.client_id], now)
        elif a.action == "defer":
            self.kernel.schedule(now + delay, PRIO_INPUT, self._route_stage, req)
        else:
            self.drop(req, None, now, "external_drop")

    # ------------------------------------------------------------------ batch decisions (external batching)

    def ask_batch(self, client: LLMClient, now: int) -> int:
        """``client`` is at a step boundary with work: stop and ask for its next batch."""
        self._decision_seq += 1
        did = self._decision_seq
        self.batch_pending[did] = (batch_view(client, did, now, self.request_id), client)
        if self.record_events:
            self.events.append(Event(now, "decision", "", client.id, {"decision_id": did, "stage": "batch"}))
        self._halt = StopReason.DECISION_NEEDED
        return did

    def pending_batch_decisions(self) -> list[BatchDecision]:
        return [d for d, _ in self.batch_pending.values()]

    def decide_batch(self, answer: BatchAnswer) -> None:
        """Answer one batch decision (``decide_many([], [answer])``); errors name ``batch_answers[0].<field>``."""
        self.decide_many((), (answer,))

    def add_wakeup(self, time_ns: int, tag: str = "") -> None:
        if time_ns < self.kernel.now:
            raise OutOfRangeError(f"time_ns: {time_ns} is before the current time {self.kernel.now}")
        _check_horizon(time_ns, "time_ns")
        self.kernel.schedule(time_ns, PRIO_INPUT, self._on_wakeup, tag)

    def _on_wakeup(self, tag: str) -> None:
        if self.record_events:
            self.events.append(Event(self.kernel.now, "wakeup", "", "", {"tag": tag}))
        self._halt = StopReason.WAKEUP

    def change_cluster(self, time_ns: int, action: str, client_id: str, client: dict | None = None) -> None:
        """Add, drain, remove or fail a client at a simulated time (validated now, applied then)."""
        if time_ns < self.kernel.now:
            raise OutOfRangeError(f"time_ns: {time_ns} is before the current time {self.kernel.now}")
        _check_horizon(time_ns, "time_ns")
        if action == "add":
            if client_id in self.client_by_id:
                raise AlreadyExistsError(f"client_id: client {client_id!r} already exists")
            from .spec import _clients

            doc = dict(client or {})
            doc["id"] = client_id
            doc.pop("replicas", None)
            spec = _clients([doc], self.spec.data_dir, "client")[0]
            self._add_client(spec, "client")  # validates now; inactive until time_ns
            self.client_by_id[client_id].status = ClientStatus.PENDING
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
            client.status = ClientStatus.ACTIVE
        elif action in ("drain", "remove"):
            if client.status != ClientStatus.FAILED:
                client.status = ClientStatus.DRAINING if action == "drain" else ClientStatus.REMOVED
        else:
            self.batch_pending = {k: v for k, v in self.batch_pending.items() if v[1] is not client}
            for req in client.fail(now):
                self.drop(req, client, now, "client_failed")
        if self.record_events:
            self.events.append(Event(now, "cluster", "", cid, {"action": action}))

    # ------------------------------------------------------------------ views

    def state(self) -> ClusterState:
        now = self.kernel.now
        st = ClusterState(now, self.injected - self.completed - self.dropped - self.aborted, self.injected,
                          self.completed, self.dropped, len(self.pending) + len(self.held) + len(self.batch_pending),
                          links=self.network.link_stats(now), aborted=self.aborted)
        for c in self.clients:
            if c.status == ClientStatus.REMOVED and c.is_idle():
                continue
            used = c.kv_used_now(now)
            llm = llm_counters(c)
            st.clients.append(ClientState(
                id=c.id, hardware=c.spec.hardware.name if c.spec.hardware else "", model=c.model, role=c.spec.role,
                status=str(c.status), num_waiting=len(c.waiting), num_running=c.num_running(),
                kv_used_blocks=used, kv_total_blocks=llm.total_blocks,
                kv_usage=used / llm.total_blocks if llm.total_blocks else 0.0,
                running_tokens=c.running_tokens(),
                waiting_prompt_tokens=c.waiting_prompt_tokens(), est_step_s=c.last_step_s,
                prompt_tokens_total=llm.prompt_tokens_total, generation_tokens_total=llm.generation_tokens_total,
                preemptions_total=llm.preemptions_total, requests_completed_total=c.completed_total,
                busy_s=c.busy_ns / NS_PER_S, energy_j=c.energy_j,
            ))
        return st

    def summary(self) -> dict[str, Any]:
        from .summary import summarize

        return summarize(self)

    def request_records(self) -> dict[str, np.ndarray]:
        return self.records.arrays()

    def in_flight(self) -> list[str]:
        """Ids of the requests injected (or arrived) and not yet ended, oldest first."""
        return list(self._live)

    def is_done(self) -> bool:
        return not len(self.kernel) and not self.pending and not self.held and not self.batch_pending

    # ------------------------------------------------------------------ what-if copies

    def fork(self) -> Simulation:
        """An independent copy (perf models, which hold only memoised costs, are shared)."""
        memo = {id(c.perf): c.perf for c in self.clients if hasattr(c, "perf")}  # generic clients have none
        return copy.deepcopy(self, memo)

    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(blob: bytes) -> Simulation:
        sim = pickle.loads(blob)
        if not isinstance(sim, Simulation):
            raise SpecError("snapshot", "not a HERMES simulation snapshot")
        return sim
