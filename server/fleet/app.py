"""The HTTP front: one aiohttp listener per simulated LLM client, all paced by one Pacer.

Each listener answers what vLLM's OpenAI server offers and routers probe (docs/FLEET.md):
``POST /v1/completions``, ``POST /v1/chat/completions`` (JSON or server-sent events),
``GET /v1/models``, ``/health``, ``/metrics``, ``/get_load`` (vllm-router's or sglang-router's
format), plus ``/get_model_info`` and ``/get_server_info`` for sglang-style probes.

The optional gateway listener (``gateway_port``) answers the same generation calls, but its
requests are not pinned: they run the spec's own pipeline (RAG, KV retrieval, model routing,
prefill/decode, reasoning) placed by the spec's router, and its ``/metrics`` shows per-stage latencies.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import HttpVersion11, web

from sim_engine import Simulation, SpecError, load_spec
from sim_engine.errors import LimitError
from sim_engine.spec import SimSpec
from sim_engine.workload import LengthSampler

from .metrics import CONTENT_TYPE, FleetMetrics
from .pacer import FLEET_PIPELINE, Call, Pacer
from .requests import BadRequest, GenRequest, Limits, parse_json, parse_request
from .responses import SSE_DONE, Shaper, direct_sink, error_response, sse_error
from .router import RoundRobin, RouterDesk, RouterService, start_router_server

DEFAULT_OUTPUT_TOKENS = 16  # OpenAI's default max_tokens for completions, when the spec has no distribution
LOAD_FORMATS = ("vllm", "sglang")
INSTANCE: web.AppKey[Instance] = web.AppKey("instance")
INSTANCE_HEADER = "x-hermes-instance"  # names the simulated client that served a call
# engine drop reasons -> (HTTP status, what the caller did)
DROP_STATUS = {
    "exceeds_max_model_len": 400,
    "exceeds_kv_capacity": 400,
    "exceeds_batch_token_budget": 400,
}


def fleet_spec(source: Any, overrides: dict | None = None, workload: bool = False) -> SimSpec:
    """The spec as the front runs it: the spec's router (listener requests are pinned to their
    client), a one-stage pipeline for listener requests, and no workload unless asked."""
    ov = dict(overrides or {})
    ov[f"pipelines.{FLEET_PIPELINE}"] = [{"kind": "llm"}]
    if not workload:
        ov["workload.arrival"] = {"process": "none"}
    spec = load_spec(source, ov)
    spec.refuse_external_batching("the HTTP front")
    return spec


@dataclass
class Instance:
    """One listener: the simulated client it fronts (None: the gateway) and where it listens."""

    client_id: str | None
    model: str  # the gateway's default model (the spec's workload model)
    max_model_len: int
    kv_tokens: int
    block_size: int
    port: int = 0
    url: str = ""
    inflight: int = 0


class Fleet:
    """A simulation, its pacer, and one HTTP listener per LLM client that can serve requests alone."""

    def __init__(self, spec: SimSpec, time_scale: float = 1.0, host: str = "127.0.0.1", base_port: int = 8100,
                 load_format: str = "vllm", limits: Limits | None = None, max_inflight: int = 4096,
                 gateway_port: int | None = None, router_port: int | None = None, router_timeout_s: float = 0.5,
                 router_token: str | None = None, router_tls: tuple[str, str] | None = None):
        if load_format not in LOAD_FORMATS:
            raise ValueError(f"load_format must be one of {LOAD_FORMATS}")
        self.spec, self.host, self.base_port, self.load_format = spec, host, base_port, load_format
        self.limits = limits or Limits()
        self.max_inflight = max_inflight
        self.sim = Simulation(spec, record_events=True)
        self.pacer = Pacer(self.sim, time_scale)
        self.metrics = FleetMetrics(self.sim, self.pacer)
        self.pacer.background = RoundRobin()  # only asked when the spec's router is external
        # --router-port: an outside router answers the spec's routing decisions over gRPC (server/fleet/router.py)
        self.router_port, self.router_token, self.router_tls = router_port, router_token, router_tls
        self.router: RouterDesk | None = None
        self._router_server = None
        if router_port is not None:
            if spec.router != "external":
                raise SpecError("router.policy", "--router-port needs the spec's router to be external "
                                f"(it is {spec.router}); set it with --set router.policy=external")
            self.router = RouterDesk(self.pacer, router_timeout_s)
            self.pacer.background = self.router
            self.pacer.on_events = self.router.note_events
        states = {c.id: c for c in self.sim.state().clients}
        self.instances: list[Instance] = []
        for cs in spec.clients:
            if cs.role != "both":  # prefill-only and decode-only clients serve pipeline stages, not calls
                continue
            st = states[cs.id]
            self.instances.append(Instance(cs.id, cs.model.name, cs.scheduler.max_model_len or cs.model.max_context,
                                           st.kv_total_blocks * cs.scheduler.block_size, cs.scheduler.block_size))
        if not self.instances:
            raise SpecError("clients", "the fleet needs at least one LLM client with role both")
        self.gateway_port = gateway_port
        self.gateway: Instance | None = None
        if gateway_port is not None:  # a call must fit the largest LLM client (where its stages run is checked later)
            llm = [(cs.scheduler.max_model_len or cs.model.max_context,
                    states[cs.id].kv_total_blocks * cs.scheduler.block_size) for cs in spec.clients if cs.is_llm]
            self.gateway = Instance(None, self.sim.default_model, max(n for n, _ in llm), max(k for _, k in llm), 0)
        self.models = sorted({c.model.name for c in spec.clients if c.is_llm})
        w = spec.workload.output_tokens
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(8)[7])
        base_dir = spec.document.get("base_dir")
        self._sampler = LengthSampler(w, rng, base_dir, "workload.output_tokens") if w is not None else None
        self._runners: list[web.AppRunner] = []

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> list[Instance]:
        """Open the listeners (ports base, base+1, ... in client order; base 0 picks free ports)."""
        for i, inst in enumerate(self.instances):
            await self._listen(inst, self.base_port + i if self.base_port else 0)
        if self.gateway is not None:
            await self._listen(self.gateway, self.gateway_port or 0)
        if self.router is not None:
            service = RouterService(self.router, self.spec.name, self.spec.router, self.router_token)
            self._router_server, self.router_port = await start_router_server(service, self.host, self.router_port or 0,
                                                                              self.router_tls)
        self.pacer.start()  # after the listeners are up: their setup must not count as lag
        return self.instances

    async def _listen(self, inst: Instance, port: int) -> None:
        app = web.Application(client_max_size=self.limits.max_body_bytes)
        app[INSTANCE] = inst
        self._routes(app, gateway=inst.client_id is None)
        # handler_cancellation: a caller that disconnects cancels its handler, which aborts its requests
        runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        inst.port = site._server.sockets[0].getsockname()[1] if port == 0 else port  # type: ignore[union-attr]
        host = f"[{self.host}]" if ":" in self.host else self.host
        inst.url = f"http://{host}:{inst.port}"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._router_server is not None:
            await self._router_server.stop(grace=0.2)
            self._router_server = None
        await self.pacer.stop()

    def _routes(self, app: web.Application, gateway: bool) -> None:
        """The OpenAI surface, health and metrics; an instance adds the load and info probes routers poll."""
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        if not gateway:
            app.router.add_get("/get_load", self._get_load)
            app.router.add_get("/get_model_info", self._model_info)
            app.router.add_get("/get_server_info", self._server_info)

    # ---------------------------------------------------------------- probes

    def _status(self, inst: Instance) -> str:
        if inst.client_id is None:  # the gateway serves while the spec's router finds clients
            return "active"
        return self.pacer.client_status.get(inst.client_id, "active")

    async def _health(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        if self._status(inst) != "active":
            return error_response(503, f"simulated instance {inst.client_id} is {self._status(inst)}")
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        if inst.client_id is None:
            lens = {c.model.name: c.scheduler.max_model_len or c.model.max_context for c in self.spec.clients
                    if c.is_llm}
            return web.json_response({"object": "list", "data": [{
                "id": m, "object": "model", "created": int(time.time()), "owned_by": "hermes", "root": m,
                "parent": None, "max_model_len": lens[m]} for m in self.models]})
        return web.json_response({"object": "list", "data": [{
            "id": inst.model, "object": "model", "created": int(time.time()), "owned_by": "hermes",
            "root": inst.model, "parent": None, "max_model_len": inst.max_model_len}]})

    async def _model_info(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        return web.json_response({"model_path": inst.model, "tokenizer_path": inst.model, "is_generation": True})

    async def _server_info(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        return web.json_response({"model_path": inst.model, "served_model_name": inst.model,
                                  "max_total_num_tokens": inst.kv_tokens, "page_size": inst.block_size,
                                  "context_length": inst.max_model_len, "hermes_client": inst.client_id,
                                  "time_scale": self.pacer.scale})

    async def _metrics(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        body = self.metrics.render_gateway() if inst.client_id is None else self.metrics.render(inst.client_id)
        if inst.client_id is None and self.router is not None:
            body += self.router.exposition().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _get_load(self, request: web.Request) -> web.Response:
        inst = request.app[INSTANCE]
        st = next(c for c in self.sim.state().clients if c.id == inst.client_id)
        if self.load_format == "vllm":
            return web.json_response({"load": st.num_running + st.num_waiting})
        return web.json_response([{"dp_rank": 0, "num_reqs": st.num_running + st.num_waiting,
                                   "num_waiting_reqs": st.num_waiting,
                                   "num_tokens": st.running_tokens + st.waiting_prompt_tokens}])

    # ---------------------------------------------------------------- generation

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    def _outputs(self, g: GenRequest, count: int) -> tuple[list[int], str]:
        if g.max_tokens is not None:
            return [g.max_tokens] * count, "length"
        if self._sampler is not None:
            return [self._sampler.sample() for _ in range(count)], "stop"
        return [DEFAULT_OUTPUT_TOKENS] * count, "length"

    def _check_fits(self, inst: Instance, g: GenRequest, outputs: list[int]) -> None:
        longest = max(g.prompt_tokens) + max(outputs)
        what = "max_tokens" if g.max_tokens is not None else "prompt"
        if longest > inst.max_model_len:
            raise BadRequest(what, f"This model's maximum context length is {inst.max_model_len} tokens. However, "
                             f"you requested {longest} tokens ({max(g.prompt_tokens)} in the prompt, "
                             f"{max(outputs)} for the completion).")
        if longest > inst.kv_tokens:
            raise BadRequest(what, f"prompt plus completion ({longest} tokens) exceeds the simulated KV cache of "
                             f"{inst.kv_tokens} tokens")

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        inst: Instance = request.app[INSTANCE]
        try:
            if request.content_length is not None and request.content_length > self.limits.max_body_bytes:
                raise BadRequest(None, f"request body exceeds {self.limits.max_body_bytes} bytes", 413)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise BadRequest(None, f"request body exceeds {self.limits.max_body_bytes} bytes", 413) from None
            g = parse_request(parse_json(body, self.limits), chat, self.limits)
            served = self.models if inst.client_id is None else (inst.model,)
            if g.model is not None and g.model not in served:
                raise BadRequest("model", f"The model `{g.model}` does not exist.", 404)
            if self._status(inst) != "active":
                raise BadRequest(None, f"simulated instance {inst.client_id} is {self._status(inst)}", 503)
            count = len(g.prompt_tokens) * g.n
            if inst.inflight + count > self.max_inflight:
                raise BadRequest(None, f"instance {inst.client_id} has {inst.inflight} requests in flight "
                                 f"(limit {self.max_inflight})", 429)
            outputs, finish = self._outputs(g, count)
            self._check_fits(inst, g, outputs)
            try:
                call = self.pacer.submit(inst.client_id, g.model or inst.model, g.prompt_tokens, outputs, g.n)
            except LimitError as e:
                raise BadRequest(None, str(e), 429) from None
            except SpecError as e:
                raise BadRequest(e.field, str(e)) from None
        except BadRequest as e:
            return error_response(e.status, e.message, e.param)
        inst.inflight += count
        try:
            shaper = Shaper(chat, inst.model)
            if g.stream:
                return await self._stream(request, call, g, shaper, finish, inst)
            return await self._full(call, g, shaper, finish, inst)
        except (asyncio.CancelledError, ConnectionResetError):
            self._abandon(call)  # the caller disconnected: nobody waits for these requests any more
            raise
        finally:
            inst.inflight -= count

    def _abandon(self, call: Call) -> None:
        """Abort a call's requests that are still running and count them (finished_reason abort)."""
        for job in self.pacer.abort(call):
            self.metrics.note_aborted(job.client_id)

    @staticmethod
    def _failure(call: Call) -> tuple[int, str] | None:
        for job in call.jobs:
            if job.error:
                status = DROP_STATUS.get(job.error, 503)
                return status, f"the simulated instance refused the request ({job.error})"
        return None

    async def _full(self, call: Call, g: GenRequest, shaper: Shaper, finish: str, inst: Instance) -> web.Response:
        while not call.finished:
            await call.wait()
        fail = self._failure(call)
        if fail is not None:
            return error_response(*fail)
        choices = [(j.index, j.output, finish, j.thinking) for j in call.jobs]
        if finish == "stop":
            self._note_stopped(call)
        served_by = inst.client_id or ",".join(sorted({j.client_id for j in call.jobs}))
        return web.json_response(shaper.full(choices, sum(g.prompt_tokens)), headers={INSTANCE_HEADER: served_by})

    def _note_stopped(self, call: Call) -> None:
        for j in call.jobs:
            self.metrics.note_stopped(j.client_id, 1)

    async def _stream(self, request: web.Request, call: Call, g: GenRequest, shaper: Shaper,
                      finish: str, inst: Instance) -> web.StreamResponse:
        try:
            return await self._stream_events(request, call, g, shaper, finish, inst)
        finally:
            call.sink = None  # the pacer must not write to a response that has ended

    async def _stream_events(self, request: web.Request, call: Call, g: GenRequest, shaper: Shaper,
                             finish: str, inst: Instance) -> web.StreamResponse:
        """The handler writes the head, the first tokens and the end; the tokens in between go out from
        the pacer through the call's sink, straight to the socket (see responses.direct_sink), once every
        job's thinking tokens (written here, as ``reasoning_content`` in a chat) are out."""
        jobs = call.jobs
        plain = [shaper.token_chunk(j.index) for j in jobs]
        think = [shaper.reasoning_chunk(j.index) for j in jobs]
        resp: web.StreamResponse | None = None
        while True:
            if not call.finished and all(j.sent >= j.released for j in jobs):
                await call.wait()
                continue
            if resp is None:
                fail = self._failure(call) if not any(j.released for j in jobs) else None
                if fail is not None:
                    return error_response(*fail)
                headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
                if inst.client_id is not None:  # a gateway stream's clients are not all known yet
                    headers[INSTANCE_HEADER] = inst.client_id
                resp = web.StreamResponse(headers=headers)
                await resp.prepare(request)
                if g.chat:
                    await resp.write(b"".join(shaper.role_chunk(j.index) for j in jobs))
            parts = []
            for i, j in enumerate(jobs):
                k = j.released - j.sent
                if k <= 0:
                    continue
                t = min(k, j.thinking - j.sent)  # reasoning tokens come first
                if t > 0:
                    parts.append(think[i] * t)
                    j.sent += t
                    k -= t
                    if k == 0:
                        continue
                if j.done and not j.error:
                    parts.append(plain[i] * (k - 1))
                    parts.append(shaper.token_chunk(j.index, finish))
                else:
                    parts.append(plain[i] * k)
                j.sent = j.released
            if call.finished:
                fail = self._failure(call)
                if fail is not None:
                    parts.append(sse_error(*fail))
                elif finish == "stop":
                    self._note_stopped(call)
                if fail is None and g.include_usage:
                    parts.append(shaper.usage_chunk(sum(g.prompt_tokens), sum(j.output + j.thinking for j in jobs),
                                                    sum(j.thinking for j in jobs)))
                parts.append(SSE_DONE)
            try:
                await resp.write(b"".join(parts))
            except ConnectionResetError:
                self._abandon(call)  # the caller left: its requests are aborted in the engine
                return resp
            if call.finished:
                await resp.write_eof()
                return resp
            if call.sink is None and request.version >= HttpVersion11 and request.transport is not None \
                    and all(j.sent >= j.thinking for j in jobs):  # the sink writes answer tokens only
                call.sink = direct_sink(request.transport, plain)  # aiohttp chose chunked encoding (1.1)

