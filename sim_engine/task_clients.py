"""Clients that serve one-shot tasks: embedding, vector search, re-rank and generic stages.

A ``BatchClient`` works like MIST's batched scheduler: whenever idle it takes up
to ``max_batch`` queued tasks and serves them in one batch whose time comes from
a cost model (the performance model for encoder passes, the vector-search cost
model for index scans). A ``GenericClient`` runs up to ``concurrency`` tasks at
once, each for a latency drawn from the stage's distribution.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from .client_api import ClientStatus
from .kernel import PRIO_DECIDE, PRIO_STATE
from .request import Request
from .units import NS_PER_S
from .vector_search import search_time_s

if TYPE_CHECKING:
    from .client_api import SimContext
    from .spec import ClientSpec


class TaskClient:
    """A client of one-shot tasks: the ``client_api.Client`` protocol, with no KV cache of its own."""

    def __init__(self, index: int, spec: ClientSpec, sim: SimContext) -> None:
        self.index, self.id, self.spec, self.sim = index, spec.id, spec, sim
        self.model = spec.model.name if spec.model is not None else ""
        self.batching = spec.role
        self.status: str = ClientStatus.ACTIVE
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.busy_ns = 0
        self.energy_j = 0.0
        self.steps = 0
        self.seq_sum = 0
        self.completed_total = 0
        self.last_step_s = 0.0
        self.idle_w = (spec.hardware.idle_w * spec.n_devices) if spec.hardware is not None else 0.0
        self.plan_pending = False

    def rejects(self, req: Request) -> tuple[str, str]:
        return "", ""

    def submit(self, req: Request, now: int) -> None:
        req.client = self
        req.enqueue_ns = now
        self.waiting.append(req)
        self.poke(now)

    def poke(self, now: int) -> None:
        if not self.plan_pending:
            self.plan_pending = True
            self.sim.kernel.schedule(now, PRIO_DECIDE, self._plan)

    def _plan(self, _arg=None) -> None:
        raise NotImplementedError

    def load(self) -> int:
        return len(self.waiting) + len(self.running)

    def is_idle(self) -> bool:
        return not (self.waiting or self.running)

    def kv_used_now(self, now: int) -> int:
        return 0

    def waiting_prompt_tokens(self) -> int:
        return sum(r.prompt for r in self.waiting)

    def running_tokens(self) -> int:
        return sum(r.prompt for r in self.running)

    def num_running(self) -> int:
        return len(self.running)

    def fail(self, now: int) -> list[Request]:
        held = list(self.waiting) + self.running
        self.waiting.clear()
        self.running = []
        self.status = ClientStatus.FAILED
        return held

    def cancel(self, req: Request, now: int) -> None:
        """Abort: drop ``req`` from the queue or from the tasks in flight (no-op if it is not here).

        The running list is edited in place, so a batch in flight ends without it."""
        if req in self.waiting:
            self.waiting.remove(req)
        elif req in self.running:
            self.running.remove(req)
            self.poke(now)

    def _done(self, req: Request, now: int) -> None:
        if req.client is self and self.status != ClientStatus.FAILED:
            self.completed_total += 1
            self.sim.stage_done(req, self, now)


class BatchClient(TaskClient):
    """Embedding / re-rank (encoder forward passes) or vector search, served in batches."""

    def __init__(self, index: int, spec: ClientSpec, sim: SimContext, perf) -> None:
        super().__init__(index, spec, sim)
        self.perf = perf
        self.max_batch = spec.max_batch

    def _batch_cost(self, batch: list[Request]) -> tuple[float, float]:
        """(seconds, joules) of one batch of the stage the head task is in."""
        stage = batch[0].pipeline[batch[0].stage]
        if stage.kind == "search":
            t, compute, memory = search_time_s(stage.params["index"], self.spec.hardware, len(batch))
            hw = self.spec.hardware
            util = max(compute, memory) / t if t > 0 else 0.0
            return t, t * self.spec.n_devices * (hw.idle_w + (hw.peak_w - hw.idle_w) * util)
        if stage.kind == "rerank":
            docs, doc_tokens = stage.params["candidates"], stage.params["doc_tokens"]
            limit = self.spec.model.max_context
            chunks = [(0, min(r.prompt + doc_tokens, limit)) for r in batch for _ in range(docs)]
        else:  # embed: one encoder pass over each query, truncated to the encoder's context like real servers
            limit = self.spec.model.max_context
            chunks = [(0, min(r.pipeline[r.stage].params.get("query_tokens") or r.prompt, limit)) for r in batch]
        cost = self.perf.step(chunks, 0, 0)
        return cost.time_s, cost.energy_j

    def _plan(self, _arg=None) -> None:
        self.plan_pending = False
        if self.running or not self.waiting or self.status == ClientStatus.FAILED:
            return
        now = self.sim.kernel.now
        kind = self.waiting[0].pipeline[self.waiting[0].stage].kind
        batch: list[Request] = []
        while self.waiting and len(batch) < self.max_batch \
                and self.waiting[0].pipeline[self.waiting[0].stage].kind == kind:
            req = self.waiting.popleft()
            req.stage_start_ns = now
            batch.append(req)
        t, energy = self._batch_cost(batch)
        dur = max(1, round(t * NS_PER_S))
        self.running = batch
        self.busy_ns += dur
        self.energy_j += energy
        self.steps += 1
        self.seq_sum += len(batch)
        self.last_step_s = t
        self.sim.trace_step(self, now, dur, len(batch), 0, len(batch))
        self.sim.kernel.schedule(now + dur, PRIO_STATE, self._end_batch, batch)

    def _end_batch(self, batch: list[Request]) -> None:
        if batch is not self.running:
            return  # the client failed meanwhile
        now = self.sim.kernel.now
        self.running = []
        for req in batch:
            self._done(req, now)
        self.poke(now)


class GenericClient(TaskClient):
    """Tool calls, pre/post-processing, guard models: a latency distribution and a concurrency limit."""

    def __init__(self, index: int, spec: ClientSpec, sim: SimContext, rng: np.random.Generator) -> None:
        super().__init__(index, spec, sim)
        self.concurrency = spec.concurrency
        self.rng = rng

    @staticmethod
    def draw_latency_s(dist: dict, rng: np.random.Generator) -> float:
        """One draw (seconds) from a stage's latency distribution (given in ms)."""
        kind = dist["dist"]
        if kind == "fixed":
            ms = dist["ms"]
        elif kind == "uniform":
            ms = rng.uniform(dist["low_ms"], dist["high_ms"])
        elif kind == "normal":
            ms = max(rng.normal(dist["mean_ms"], dist["std_ms"]), 0.0)
        else:  # lognormal with the given mean
            ms = rng.lognormal(np.log(dist["mean_ms"]) - dist["sigma"] ** 2 / 2, dist["sigma"])
        return float(ms) / 1e3

    def _plan(self, _arg=None) -> None:
        self.plan_pending = False
        now = self.sim.kernel.now
        while self.waiting and len(self.running) < self.concurrency and self.status != ClientStatus.FAILED:
            req = self.waiting.popleft()
            req.stage_start_ns = now
            t = self.draw_latency_s(req.pipeline[req.stage].params["latency"], self.rng)
            dur = max(1, round(t * NS_PER_S))
            self.running.append(req)
            self.busy_ns += dur  # task-seconds: utilisation = busy / (time x concurrency)
            self.energy_j += t * (self.spec.hardware.peak_w * self.spec.n_devices if self.spec.hardware else 0.0)
            self.steps += 1
            self.seq_sum += 1
            self.last_step_s = t
            self.sim.kernel.schedule(now + dur, PRIO_STATE, self._end_task, req)

    def _end_task(self, req: Request) -> None:
        if req not in self.running:
            return
        self.running.remove(req)
        now = self.sim.kernel.now
        self._done(req, now)
        self.poke(now)
