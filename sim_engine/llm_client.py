"""An LLM serving instance with a vLLM-style iteration-level scheduler.

State is kept in aggregate so a decode step costs O(1) Python work whatever the
batch size. Every sequence in the decode set produces one token per decode step,
so the client keeps one *decode counter* ``G`` (decode steps run so far) and a
request's KV context is ``base + G``. A request needs a new KV block at the step
where ``(base + G) % block_size == 0``; ``phase[p]`` counts the requests whose
next blocks fall on steps with ``G % block_size == p``. Completions come from a
heap keyed by the counter value of each request's last token.

Admission is ``greedy`` (vLLM, SGLang: admit while KV blocks are free, preempt the
newest request by recompute when a decode step's new blocks do not fit; it keeps the
tokens it generated and re-prefills prompt + generated tokens when it resumes) or
``reserve`` (TensorRT-LLM, NIM: admit only when the request's whole KV, prompt + every
output token, fits beside what the running requests reserved; nothing is ever evicted).
In both, KV blocks in use never exceed capacity at any step. Reasoning branches share
their prompt's blocks; a branch's copy of a shared partial block is charged at its first
decode step, and preempted branches keep their tokens too (each re-prefilled).

With ``batching: external`` the client asks the co-simulation client at every step
boundary where it has work (a batch decision, see external_batch.py) and runs the
checked answer through the same step machinery as the built-in policies.

With ``prefix_caching`` (vLLM V1, SGLang) freed full blocks keep their content in a
``PrefixCache``: they count as free, are evicted oldest first when an allocation needs them
(blocks in use + cached never exceed capacity), and a request admitted from the queue takes
back the cached leading blocks of its shared prefix and of its own earlier KV (a preempted
request's recompute), prefilling only the rest. The first request of a prefix group to finish
its prefill shares its prefix blocks (``sharing``: in use, counted once) with every request of
the group admitted while it holds them, as vLLM's reference-counted blocks are shared; they are
cached when the last holder frees them. Reasoning branches do not use the cache.

Runs of decode-only steps (nothing to admit, nothing arriving) are advanced in
closed form: step times and KV growth for the whole run are computed with numpy,
and one event fires at its end. If something reaches the client mid-run, the
run is cut at the end of the step in flight, exactly as step-by-step simulation
would have seen it.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .engines import CHUNKING
from .kernel import PRIO_DECIDE, PRIO_INPUT, PRIO_STATE
from .prefix_cache import PrefixCache
from .request import Request
from .spec import ClientSpec

if TYPE_CHECKING:
    from .client_api import SimContext as Simulation  # the simulation as a client sees it

MAX_RUN_STEPS = 4096  # longest closed-form run (bounds the arrays built per run)
_STEPS = np.arange(MAX_RUN_STEPS, dtype=np.int64)  # sliced, not rebuilt, for each run
_PHASES: dict[tuple[int, int], np.ndarray] = {}  # (block size, first phase) -> phase of each step


def _run_phases(bs: int, g: int, k: int) -> np.ndarray:
    """``(g + s) % bs`` for the steps s < k of a run (the common block sizes' arrays are kept)."""
    if k > len(_STEPS) or bs > 64:
        return (np.arange(k, dtype=np.int64) + g) % bs
    phases = _PHASES.get((bs, g))
    if phases is None:
        phases = _PHASES[bs, g] = (_STEPS + g) % bs
    return phases[:k]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class BatchPlan:
    """A checked answer to a batch decision (external batching), ready to apply (see external_batch.py)."""

    preempt: list[Request]
    chunks: list[tuple[Request, int, bool]]  # (request, tokens, admitted from the waiting queue now)
    decode: bool
    repeat: bool


class _Run:
    """A closed-form run of decode-only steps in flight."""

    __slots__ = ("start", "ends", "durs", "energies", "blocks_cum", "k")

    def __init__(self, start: int, ends: np.ndarray, durs: np.ndarray, energies: np.ndarray,
                 blocks_cum: np.ndarray) -> None:
        self.start, self.ends, self.durs, self.energies, self.blocks_cum = start, ends, durs, energies, blocks_cum
        self.k = len(ends)

    def done_by(self, now: int) -> int:
        """Steps of this run that have ended at or before ``now``."""
        return min(int(self.ends.searchsorted(now, "right")), self.k)


class LLMClient:
    """One serving instance: hardware x (tp*pp) devices running one model."""

    def __init__(self, index: int, spec: ClientSpec, perf, sim: Simulation, kv_capacity_tokens: int):
        self.index, self.id, self.spec, self.perf, self.sim = index, spec.id, spec, perf, sim
        self.model = spec.model.name
        s = spec.scheduler
        self.batching = s.batching
        self.max_seqs = s.max_num_seqs
        self.max_len = s.max_model_len or spec.model.max_context
        # default budget: static batching (FasterTransformer, TensorRT-LLM's gptSessionBenchmark, HF
        # generate) prefills its whole batch of up to max_num_seqs requests in one forward
        default_budget = self.max_seqs * self.max_len if s.batching == "static" else self.max_len
        self.budget = s.max_num_batched_tokens or (2048 if s.batching in CHUNKING else default_budget)
        self.bs = s.block_size
        self.group = s.num_scheduler_steps  # decode steps per scheduling decision (multi-step scheduling)
        self.total_blocks = kv_capacity_tokens // self.bs
        self.used_blocks = 0
        self.reserve = s.admission == "reserve"
        self.committed = 0  # reserve admission: blocks reserved by the admitted requests (>= used_blocks)
        self.cache = PrefixCache() if s.prefix_caching else None  # freed blocks still reusable
        self.sharing: dict[str, list[int]] = {}  # prefix_key -> [holders, blocks] of prefix blocks in use
        self.status = "active"
        self.waiting: deque[Request] = deque()
        self.prefilling: list[Request] = []  # admitted, prompt partly in KV (chunked batching)
        self.decoding: dict[int, Request] = {}
        self.G = 0
        self.sum_base = 0
        self.phase = [0] * self.bs
        self.cow: list[Request] = []  # branches whose copy of the shared partial block is due at their first step
        self.finish_heap: list[tuple[int, int, Request]] = []
        self.admit_seq = 0
        self.next_key = 0
        self.busy = False
        self.plan_pending = False
        self.asking = 0  # id of this client's pending batch decision (external batching), 0 if none
        self.version = 0  # bumps when a scheduled step-end event becomes stale
        self.run: _Run | None = None
        self.last_decode_end = -1
        self.joined: list[int] = []  # first-token times of requests that joined since the last decode step
        # statistics
        self.steps = 0
        self.busy_ns = 0
        self.energy_j = 0.0
        self.seq_sum = 0  # sum over steps of sequences in the batch
        self.token_sum = 0  # sum over steps of tokens in the batch
        self.kv_integral = 0.0  # sum over steps of used blocks x duration (ns)
        self.kv_peak = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.preemptions_total = 0
        self.prefix_queries = 0  # prompt tokens looked up in the prefix cache (vllm:prefix_cache_queries)
        self.prefix_hits = 0  # ... and found there, not recomputed (vllm:prefix_cache_hits)
        self.completed_total = 0
        self.itl_values = array("q")  # inter-token latencies (ns) ...
        self.itl_weights = array("q")  # ... and how many tokens saw each
        self.last_step_s = 0.0
        self.idle_w = spec.hardware.idle_w * spec.n_devices
        engine = getattr(perf, "engine", None)
        self.frontend_ns = round(engine.frontend_us * 1e3) if engine is not None else 0
        self.in_frontend: dict[Request, None] = {}  # requests in the API server, not yet queued (routers count them)
        self.step_chunks: list[tuple[Request, int]] = []  # prefill chunks of the step in flight
        self.step_decodes = 0  # decode sequences of the step in flight (0 for a closed-form run)

    # ------------------------------------------------------------------ intake

    def rejects(self, req: Request) -> tuple[str, str]:
        """(reason code, detail) when this client can never serve ``req``; ("", "") when it can."""
        total = req.prompt + req.target
        if total > self.max_len:
            return "exceeds_max_model_len", f"prompt+output {total} > max_model_len {self.max_len}"
        if _ceil_div(total, self.bs) > self.total_blocks:
            return "exceeds_kv_capacity", f"prompt+output {total} > KV capacity {self.total_blocks * self.bs} tokens"
        if self.reserve and self._reservation(
                req, req.prompt + req.generated - 1 if req.mode == "decode" else self._prefill_len(req)
        ) > self.total_blocks:
            return "exceeds_kv_capacity", (f"the reservation of its {self._branches(req)} branches > KV capacity "
                                           f"{self.total_blocks * self.bs} tokens")
        if self.batching not in CHUNKING and req.mode != "decode" and req.prompt - req.cached > self.budget:
            return "exceeds_batch_token_budget", (f"prompt {req.prompt} > max_num_batched_tokens {self.budget} "
                                                  "(use chunked batching)")
        return "", ""

    def submit(self, req: Request, now: int) -> None:
        """Queue a request (already checked with ``rejects``); ``req.mode`` says what to do with it.

        A new prompt first spends the engine's front-end time (API server, tokenisation).
        """
        if self.frontend_ns and req.mode != "decode":
            req.client = self
            self.in_frontend[req] = None
            self.sim.kernel.schedule(now + self.frontend_ns, PRIO_INPUT, self._after_frontend, (req, now))
            return
        self._enqueue(req, now)

    def _after_frontend(self, item: tuple[Request, int]) -> None:
        req, submitted = item
        if req not in self.in_frontend:
            return  # aborted meanwhile
        del self.in_frontend[req]
        if self.status == "failed":
            self.sim.drop(req, self, self.sim.kernel.now, "client_failed")
            return
        self._enqueue(req, self.sim.kernel.now)
        req.enqueue_ns = submitted

    def _enqueue(self, req: Request, now: int) -> None:
        req.client = self
        req.enqueue_ns = now
        req.prefilled = req.cached
        self.waiting.append(req)
        self.poke(now)

    def poke(self, now: int) -> None:
        """Something changed: make sure the scheduler looks again at the next step boundary."""
        if self.asking:
            return  # the outside scheduler sees the state when it answers
        if self.busy:
            run = self.run
            if run is not None and run.k > 1:
                j = int(run.ends.searchsorted(now, "left"))  # ends are sorted: j < k - 1 as in ends[:k]
                if self.group > 1:  # the multi-step group in flight runs to its end
                    j = min((j // self.group + 1) * self.group, run.k) - 1
                if j + 1 < run.k:
                    run.k = j + 1
                    self.version += 1
                    self.sim.kernel.schedule(int(run.ends[j]), PRIO_STATE, self._end_run, self.version)
            return
        if not self.plan_pending:
            self.plan_pending = True
            self.sim.kernel.schedule(now, PRIO_DECIDE, self._plan)

    # ------------------------------------------------------------------ KV bookkeeping
    # A decoding sequence owns ceil(ctx / block_size) - shared blocks (implicit, from its context);
    # a request that is prefilling, or the parent of reasoning branches, owns ``blocks`` (explicit).

    def _add_seq(self, seq: Request, ctx: int) -> None:
        """Add one sequence whose KV holds ``ctx`` tokens to the decode set."""
        self.next_key += 1
        seq.key = self.next_key
        seq.base = ctx - self.G
        seq.finish_g = self.G + (seq.target - seq.generated)
        seq.live = True
        self.decoding[seq.key] = seq
        self.sum_base += seq.base
        self.phase[(-seq.base) % self.bs] += 1
        heapq.heappush(self.finish_heap, (seq.finish_g, seq.key, seq))

    @staticmethod
    def _branches(req: Request) -> int:
        reasoning = req.pipeline[req.stage].params.get("reasoning") if req.pipeline else None
        return reasoning["branches"] if reasoning else 1

    def _reservation(self, req: Request, ctx: int) -> int:
        """Most blocks ``req`` can hold here once its KV holds ``ctx`` tokens (reserve admission).

        The context ends at prompt + target - 1 tokens; N reasoning branches share the
        prompt's blocks but each may copy its partial last block and grows on its own.
        """
        now_blocks = _ceil_div(ctx, self.bs)
        if req.mode == "prefill":
            return now_blocks
        end = max(_ceil_div(req.prompt + req.target, self.bs), now_blocks)
        n = self._branches(req)
        return end if n == 1 else now_blocks + n * (end - now_blocks + 1)

    def _join_decode(self, req: Request, ctx: int, now: int) -> None:
        """A request whose KV (``ctx`` tokens) is in place starts decoding, maybe as N branches."""
        reasoning = req.pipeline[req.stage].params.get("reasoning") if req.pipeline else None
        n = reasoning["branches"] if reasoning else 1
        if n == 1:
            req.blocks = 0  # ownership becomes implicit
            self._add_seq(req, ctx)
            self.joined.append(now)
            return
        # parallel branches share the prompt's KV blocks; a partial last block is copied when a
        # branch first writes to it (its first decode step), where the copy is charged (like vLLM).
        # Branches resumed after a preemption were re-prefilled each with its own tokens: the
        # parent holds all those blocks, and each branch goes on from its own context.
        req.children = []
        req.branches_left = reasoning["first_k"]
        own_tails = req.resume_extra > 0
        if req.fork_at >= 0:  # resumed
            ctx -= req.resume_extra
            req.resume_extra = 0
        else:
            req.fork_at = req.generated
        full = _ceil_div(ctx, self.bs)
        partial = ctx % self.bs != 0 and not own_tails
        for b in range(n):
            child = Request(req.idx, None, req.arrival_ns, req.prompt, req.output, req.model)
            child.parent, child.generated, child.target = req, req.generated, req.target
            child.client, child.admit_seq = self, req.admit_seq
            child.shared = full
            if partial and b:
                self.cow.append(child)
            req.children.append(child)
            self._add_seq(child, ctx)
            self.joined.append(now)

    def _leave_decode(self, seq: Request, ahead: int = 0) -> None:
        """``seq`` leaves the decode set and frees its blocks; ``ahead``: 1 when a decode step in flight
        already charged its next block (an abort between a step's start and end)."""
        if self.cow and seq in self.cow:
            self.cow.remove(seq)
        del self.decoding[seq.key]
        seq.live = False
        self.sum_base -= seq.base
        self.phase[(-seq.base) % self.bs] -= 1
        ctx = seq.base + self.G
        self.used_blocks -= _ceil_div(ctx + ahead, self.bs) - seq.shared
        past = self.G - seq.finish_g  # > 0: steps its multi-step group ran past its last token (not output)
        if past > 0:
            self.generation_tokens_total -= past
            ctx -= past
        if self.cache is not None and seq.parent is None:
            self._cache_free(seq, ctx)

    def _release(self, req: Request, ahead: int = 0) -> None:
        """Free every KV block a request (and its branches) holds on this client.

        A decoding request keeps the tokens it generated (a recompute re-prefills them).
        """
        if req.live:
            req.generated = req.target - max(req.finish_g - self.G, 0)
            self._leave_decode(req, ahead)
        for child in req.children or ():
            if child.live:
                self._leave_decode(child, ahead)
        if self.cache is not None and req.blocks and req.children is None and self._branches(req) == 1:
            self._cache_free(req, min(req.prefilled, (req.blocks + req.shared) * self.bs))
        req.children = None
        self.used_blocks -= req.blocks
        req.blocks = 0
        self.committed -= req.reserved
        req.reserved = 0

    # ------------------------------------------------------------------ prefix cache
    # A request's leading ``prefix_len // bs`` blocks are its shared prefix's, the rest its own.

    def _cache_free(self, req: Request, tokens: int) -> None:
        """``req`` frees its blocks (``tokens`` tokens): its full blocks stay cached.

        The blocks it shared (``req.shared``) are freed and cached with their last holder.
        """
        cache, key, held = self.cache, req.prefix_key, req.shared
        full = tokens // self.bs
        prefix = min(req.prefix_len // self.bs, full) if key is not None else 0
        cache.put(("r", req.idx), prefix, full)  # the tail first: it is evicted first (as in vLLM)
        if held:
            req.shared = 0
            run = self.sharing[key]
            run[0] -= 1
            if run[0] == 0:
                del self.sharing[key]
                self.used_blocks -= run[1]
                cache.put(("p", key), 0, run[1])
        cache.put(("p", key), held, prefix)

    def _cache_hit(self, req: Request) -> tuple[int, int, int]:
        """(leading blocks of ``req``'s prefill already on the GPU, how many of them are shared in use,
        where its prefix's cached blocks end): what ``_cache_take`` takes.

        Like vLLM, the block holding the last token to prefill is computed again, so at least
        one token is prefilled.
        """
        cache, key, idx, limit = self.cache, req.prefix_key, req.idx, (self._prefill_len(req) - 1) // self.bs
        prefix = min(req.prefix_len // self.bs, limit) if key is not None else 0
        run = self.sharing.get(key) if prefix and self._branches(req) == 1 else None
        in_use = run[1] if run is not None and run[1] <= prefix else 0  # all of the shared blocks, or none
        end = cache.peek(("p", key), in_use, prefix) if prefix else 0
        own = cache.peek(("r", idx), end, limit) if end == prefix else end
        return own, in_use, end

    def _cache_take(self, req: Request, own: int, in_use: int, end: int) -> None:
        """``req`` takes what ``_cache_hit`` found: the shared blocks as one more holder, the cached ones back."""
        if in_use:
            self.sharing[req.prefix_key][0] += 1
        self.cache.take(("p", req.prefix_key), in_use, end)
        self.cache.take(("r", req.idx), end, own)

    def _share_prefix(self, req: Request) -> None:
        """``req`` finished its prefill: the first of its group lends its prefix blocks to the group."""
        key, prefix = req.prefix_key, min(req.prefix_len, req.prefilled) // self.bs
        if prefix and not req.shared and key not in self.sharing and self._branches(req) == 1:
            self.sharing[key] = [1, prefix]
            req.shared = prefix
            req.blocks -= prefix

    def _fit_cache(self, extra: int = 0) -> None:
        """Evict cached blocks so they fit beside the blocks in use (plus ``extra`` about to be)."""
        cache = self.cache
        if cache is not None:
            over = self.used_blocks + extra + cache.blocks - self.total_blocks
            if over > 0:
                cache.evict(over)

    def _preempt_one(self, now: int) -> bool:
        """Preempt (recompute) the most recently admitted request; False if none is admitted."""
        victims = [s.parent or s for s in self.decoding.values()] + self.prefilling
        if not victims:
            return False
        self._preempt(max(victims, key=lambda r: r.admit_seq), now)
        return True

    def _preempt(self, victim: Request, now: int) -> None:
        """Preempt one admitted request by recompute: it goes back to the head of the queue."""
        if victim in self.prefilling:
            self.prefilling.remove(victim)
        victim.generated, victim.resume_extra, victim.fork_at = self.resume_point(victim)
        self._release(victim)
        victim.prefilled = 0
        victim.cached = 0
        victim.mode = "llm" if victim.mode == "decode" else victim.mode  # its KV is gone: recompute here
        victim.preemptions += 1
        self.preemptions_total += 1
        self.waiting.appendleft(victim)
        self.sim.note_preempted(victim, self, now)

    def resume_point(self, victim: Request) -> tuple[int, int, int]:
        """(generated, resume_extra, fork_at) an admitted request resumes from if preempted now."""
        live = next((c for c in victim.children or () if c.live), None)
        if live is not None:  # reasoning branches (all at the same step) keep their tokens too ...
            n, g = len(victim.children), live.target - (live.finish_g - self.G)
            extra = (n - 1) * (g - victim.fork_at)
            if _ceil_div(victim.prompt + g + extra, self.bs) + n <= self.total_blocks:
                return g, extra, victim.fork_at
            return victim.fork_at, 0, -1  # ... unless they can never be in KV at once: restart from the fork
        if victim.live:
            return victim.target - (victim.finish_g - self.G), victim.resume_extra, victim.fork_at
        return victim.generated, victim.resume_extra, victim.fork_at

    @staticmethod
    def _prefill_len(req: Request) -> int:
        # a recomputed request prefills its prompt plus the tokens it had generated (every branch's)
        return req.prompt + req.generated + req.resume_extra

    # ------------------------------------------------------------------ scheduling

    def _admit_decodes(self, now: int) -> None:
        """Requests whose KV arrived from a prefill client join the decode set (no compute needed).

        Like vLLM, the running decodes' next blocks come first: a request is not admitted only
        to be preempted again by the same step's growth.
        """
        waiting, bs = self.waiting, self.bs
        while waiting and waiting[0].mode == "decode" and len(self.decoding) + len(self.prefilling) < self.max_seqs:
            req = waiting[0]
            ctx = req.prompt + req.generated - 1
            need = _ceil_div(ctx, bs)
            if self.reserve:
                cost = self._reservation(req, ctx)
                if cost > self.total_blocks - self.committed:
                    return
                req.reserved = cost
                self.committed += cost
            else:  # its first decode step's new block (or branch copies) must fit beside the running decodes'
                n = self._branches(req)
                first = n if ctx % bs == 0 else n - 1
                if need + first > self.total_blocks - self.used_blocks - self._growth():
                    return
            waiting.popleft()
            self.used_blocks += need
            self._fit_cache()
            req.blocks = need
            self.admit_seq += 1
            req.admit_seq = self.admit_seq
            if req.stage_start_ns < 0:
                req.stage_start_ns = now
            self._join_decode(req, ctx, now)

    def _admit(self, budget: int, allow_partial: bool, now: int, growth: int = 0) -> list[tuple[Request, int]]:
        """Take prefill work, FCFS, within the token budget, sequence limit and free KV.

        ``growth``: new blocks the decodes of the same step will take (they are charged first).
        Under reserve admission a request is admitted only if its whole reservation fits, and
        then never waits for KV again.
        """
        chunks: list[tuple[Request, int]] = []
        bs, reserve, cache = self.bs, self.reserve, self.cache
        free = self.total_blocks - (self.committed if reserve else self.used_blocks + growth)
        if allow_partial:
            for req in self.prefilling:
                if budget <= 0:
                    break
                want = min(self._prefill_len(req) - req.prefilled, budget)
                take = want if reserve else min(want, (req.blocks + req.shared + free) * bs - req.prefilled)
                if take <= 0:
                    continue
                new_blocks = _ceil_div(req.prefilled + take, bs) - req.shared - req.blocks
                if not reserve:
                    free -= new_blocks
                req.blocks += new_blocks
                self.used_blocks += new_blocks
                budget -= take
                chunks.append((req, take))
        seqs = len(self.decoding) + len(self.prefilling)
        waiting = self.waiting
        while waiting and seqs < self.max_seqs and budget > 0 and waiting[0].mode != "decode":
            req = waiting[0]
            if cache is not None:  # what this step allocates so far (the decodes' blocks first) is evicted
                self._fit_cache(growth)
                hit, in_use, prefix_end = self._cache_hit(req)
            else:
                hit = in_use = prefix_end = 0
            start = max(req.prefilled, hit * bs)
            rest = self._prefill_len(req) - start
            take = min(rest, budget) if allow_partial else rest
            if take > budget and not (req.generated > 0 and not chunks):
                break  # whole prompts only: it waits for a step with room (a recompute may run alone)
            need = _ceil_div(start + take, bs) - in_use
            cost = self._reservation(req, self._prefill_len(req)) if reserve else need
            if cost > free:
                break
            waiting.popleft()
            free -= cost
            if reserve:
                req.reserved = cost
                self.committed += cost
            if cache is not None:
                self.prefix_queries += self._prefill_len(req)
                self.prefix_hits += hit * bs
                self._cache_take(req, hit, in_use, prefix_end)
                req.prefilled, req.shared = start, in_use
            req.blocks = need
            self.used_blocks += need
            self._mark_admitted(req, now)
            budget -= take
            seqs += 1
            self.prefilling.append(req)
            chunks.append((req, take))
        return chunks

    def _mark_admitted(self, req: Request, now: int) -> None:
        """A request leaves the queue for this client's batch: its admission order and first times."""
        self.admit_seq += 1
        req.admit_seq = self.admit_seq
        if req.scheduled_ns < 0:
            req.scheduled_ns = now
        if req.stage_start_ns < 0:
            req.stage_start_ns = now

    def _growth(self) -> int:
        """New KV blocks the next decode step takes (new blocks, and copies of shared partial blocks)."""
        return self.phase[self.G % self.bs] + len(self.cow)

    def _charge_copies(self) -> None:
        """A decode step starts: branches due a copy of the shared partial block now own one."""
        for child in self.cow:
            child.shared -= 1
        self.used_blocks += len(self.cow)
        self.cow.clear()

    def _head_admits(self, free: int) -> bool:
        """Continuous batching: would ``_admit`` take the head of the queue with ``free`` blocks?

        Free blocks only shrink during a decode run, so a head that does not fit after the
        run's first step waits for a completion, which ends the run anyway.
        """
        req = self.waiting[0]
        if req.mode == "decode" or len(self.decoding) + len(self.prefilling) >= self.max_seqs:
            return False
        start, in_use = req.prefilled, 0
        if self.cache is not None:
            hit, in_use, _ = self._cache_hit(req)
            start = max(start, hit * self.bs)
        rest = self._prefill_len(req) - start
        if rest > self.budget and req.generated == 0:
            return False
        if self.reserve:
            return self._reservation(req, self._prefill_len(req)) <= self.total_blocks - self.committed
        return _ceil_div(start + rest, self.bs) - in_use <= free

    def _make_room_for_decode(self, now: int) -> None:
        """Preempt until the next decode step's new KV blocks fit."""
        phase, bs = self.phase, self.bs
        while self.decoding and phase[self.G % bs] + len(self.cow) > self.total_blocks - self.used_blocks:
            self._preempt_one(now)

    def _plan(self, _arg=None) -> None:
        self.plan_pending = False
        if self.busy or self.status == "failed":
            return
        now = self.sim.kernel.now
        mode = self.batching
        if self.waiting and self.waiting[0].mode == "decode":
            self._admit_decodes(now)
        if mode == "external":
            if self.decoding or self.prefilling or any(r.mode != "decode" for r in self.waiting):
                self.asking = self.sim.ask_batch(self, now)
            return
        chunks: list[tuple[Request, int]] = []
        decode = bool(self.decoding)
        if mode == "continuous":
            chunks = self._admit(self.budget, False, now)
            decode = decode and not chunks
        elif mode == "static":
            if not self.decoding:
                chunks = self._admit(self.budget, False, now)
        else:  # mixed and chunked: running decodes first, prefills fill the rest of the budget
            if decode:
                self._make_room_for_decode(now)
                decode = bool(self.decoding)
            growth = self.phase[self.G % self.bs] + len(self.cow) if decode else 0
            chunks = self._admit(self.budget - len(self.decoding), mode == "chunked", now, growth)
            if not chunks and not decode and self.prefilling:
                # KV is full of partial prefills and nothing can progress: recompute the newest
                self._preempt_one(now)
                self.poke(now)
                return
        if decode and mode in ("continuous", "static"):
            self._make_room_for_decode(now)
            decode = bool(self.decoding)
            if not decode and not chunks:  # every decode was preempted: plan again on the emptied client
                self.poke(now)
                return
        if chunks:
            self._start_step(chunks, decode, now)
        elif decode:
            self._start_run(now)
        elif self.waiting and not self.decoding and not self.prefilling:
            # nothing admitted on an empty client: the head can never fit here
            self.sim.drop(self.waiting.popleft(), self, now, "kv_unavailable")
            self.poke(now)

    def apply_batch(self, plan: BatchPlan, now: int) -> None:
        """Run a checked answer to this client's batch decision (external batching)."""
        self.asking = 0
        for victim in plan.preempt:
            self._preempt(victim, now)
        chunks: list[tuple[Request, int]] = []
        for req, take, admit in plan.chunks:
            new_blocks = _ceil_div(req.prefilled + take, self.bs) - req.blocks
            if admit:
                self.waiting.remove(req)
                if self.reserve:
                    req.reserved = self._reservation(req, self._prefill_len(req))
                    self.committed += req.reserved
                self._mark_admitted(req, now)
                self.prefilling.append(req)
            req.blocks += new_blocks
            self.used_blocks += new_blocks
            chunks.append((req, take))
        if chunks:
            self._start_step(chunks, plan.decode, now)
        elif plan.decode:
            self._start_run(now, None if plan.repeat else 1)
        elif plan.preempt:
            self.poke(now)  # only preemptions: ask again on the emptied client

    def _start_step(self, chunks: list[tuple[Request, int]], decode: bool, now: int) -> None:
        n_dec = len(self.decoding) if decode else 0
        if n_dec:
            self.used_blocks += self.phase[self.G % self.bs]
            if self.cow:
                self._charge_copies()
        self._fit_cache()  # the step's new blocks (admitted prefills, decode growth) evict cached ones
        ctx_sum = self.sum_base + n_dec * self.G if n_dec else 0
        cost = self.perf.step([(r.prefilled, take) for r, take in chunks], n_dec, ctx_sum)
        dur = max(1, round(cost.time_s * 1e9))
        self.busy = True
        self.version += 1
        self.last_step_s = cost.time_s
        n_tok = n_dec
        for _, take in chunks:
            n_tok += take
        self.steps += 1
        self.busy_ns += dur
        self.energy_j += cost.energy_j
        self.seq_sum += n_dec + len(chunks)
        self.token_sum += n_tok
        self.kv_integral += self.used_blocks * dur
        if self.used_blocks > self.kv_peak:
            self.kv_peak = self.used_blocks
        self.sim.trace_step(self, now, dur, len(chunks), n_dec, n_tok)
        self.step_chunks, self.step_decodes = chunks, n_dec
        self.sim.kernel.schedule(now + dur, PRIO_STATE, self._end_step, (self.version, chunks, n_dec))

    def _end_step(self, payload) -> None:
        version, chunks, n_dec = payload
        if version != self.version:
            return
        now = self.sim.kernel.now
        self.busy = False
        self.step_decodes = 0
        if n_dec:
            self._record_decode_itl(now, now - self.last_decode_end)
            self.G += 1
            self.generation_tokens_total += n_dec
        for req, take in chunks:
            req.prefilled += take
            self.prompt_tokens_total += take
            plen = self._prefill_len(req)
            if req.prefilled < plen:
                continue
            self.prefilling.remove(req)
            req.generated += 1  # the prefill step emits the next token
            self.generation_tokens_total += 1
            if req.fork_at >= 0:  # a recompute of reasoning branches: each branch got its next token
                self.generation_tokens_total += self._branches(req) - 1
            if req.first_token_ns < 0:
                req.first_token_ns = now
                self.sim.note_first_token(req, self, now)
            if req.mode == "prefill" or req.generated >= req.target:
                self._release(req)
                self._finish(req, now)
            else:
                if self.cache is not None:
                    self._share_prefix(req)
                self._join_decode(req, plen, now)
        if n_dec:
            self._complete_due(now)
        self.poke(now)
    def _start_run(self, now: int, limit: int | None = None) -> None:
        """Start a closed-form run of decode-only steps (at least one, at most ``limit``, else MAX_RUN_STEPS).

        Multi-step scheduling (``group`` > 1): the run is whole groups; one that ends with the first
        finishing sequence is computed to its end (the finished ones too), as the engine does."""
        heap = self.finish_heap
        while heap and not (heap[0][2].live and heap[0][2].key == heap[0][1] and heap[0][2].client is self):
            heapq.heappop(heap)
        n_dec, bs, G, group = len(self.decoding), self.bs, self.G, self.group
        k = min(_ceil_div(heap[0][0] - G, group) * group, limit or max(MAX_RUN_STEPS // group, 1) * group)
        steps = _STEPS[:k] if k <= len(_STEPS) else np.arange(k, dtype=np.int64)
        if self.cow:  # the first step's copies are charged now; the cumulative growth below excludes them
            self._charge_copies()
        blocks_cum = np.array(self.phase, dtype=np.int64).take(_run_phases(bs, G % bs, k)).cumsum()
        self._fit_cache(self.phase[G % bs])  # = blocks_cum[0], as stepping would at the first step (the rest at the run's end)
        free = self.total_blocks - self.used_blocks
        if blocks_cum[-1] > free:
            k = int(np.searchsorted(blocks_cum, free, side="right"))  # >= 1: the first step fits
            steps, blocks_cum = steps[:k], blocks_cum[:k]
        if k > group and self.waiting and self.batching == "continuous" and self._head_admits(free - int(blocks_cum[0])):
            k = group  # the next step boundary admits a prefill (e.g. a request this plan preempted)
            steps, blocks_cum = steps[:k], blocks_cum[:k]
        ctx_sums = n_dec * steps
        ctx_sums += self.sum_base + n_dec * G
        times, energies = self.perf.decode_steps(n_dec, ctx_sums, group)
        ns = times * 1e9
        durs = np.rint(ns, out=ns).astype(np.int64)
        np.maximum(durs, 1, out=durs)
        ends = durs.cumsum()
        ends += now
        self.run = _Run(now, ends, durs, energies, blocks_cum)
        self.busy = True
        self.version += 1
        self.last_step_s = float(times[0])
        self.sim.kernel.schedule(int(ends[-1]), PRIO_STATE, self._end_run, self.version)

    def _end_run(self, version: int) -> None:
        if version != self.version:
            return
        now = self.sim.kernel.now
        self._apply_run_steps(self.run.k)
        self._close_run(now)
        self.poke(now)

    def _close_run(self, now: int) -> None:
        """The run in flight is over (its steps accounted): the requests it finished complete."""
        self.run = None
        self.busy = False
        self._complete_due(now)

    def _apply_run_steps(self, k: int) -> None:
        """Account the first ``k`` steps of the run in flight (they ended: the run's end, or an abort)."""
        run = self.run
        assert run is not None
        n_dec = len(self.decoding)
        durs = run.durs[:k]
        used_after = self.used_blocks + run.blocks_cum[:k]
        end = int(run.ends[k - 1])
        self.steps += k
        self.busy_ns += end - run.start
        self.energy_j += float(run.energies[:k].sum())
        self.seq_sum += k * n_dec
        self.token_sum += k * n_dec
        self.kv_integral += float(np.dot(used_after, durs))
        self.used_blocks = int(used_after[-1])
        self._fit_cache()
        if self.used_blocks > self.kv_peak:
            self.kv_peak = self.used_blocks
        self.generation_tokens_total += k * n_dec
        self.sim.trace_step(self, run.start, end - run.start, 0, n_dec, n_dec, k)
        if self.group == 1:  # every step streams its tokens
            first_end = run.start + int(durs[0])
            gaps = durs[1:]
        else:  # tokens reach the client at the end of each group (and of a cut one)
            ends = run.ends[self.group - 1:k:self.group]
            if not len(ends) or int(ends[-1]) != end:
                ends = np.append(ends, end)
            first_end = int(ends[0])
            gaps = np.diff(ends)
        self._record_decode_itl(first_end, first_end - self.last_decode_end)
        if len(gaps):
            self.itl_values.frombytes(gaps.tobytes())  # int64, as the array's "q" items
            self.itl_weights.extend(array("q", (n_dec,)) * len(gaps))
        self.last_decode_end = end
        self.G += k

    def _record_decode_itl(self, end: int, gap_old: int) -> None:
        """Inter-token latencies of one decode step ending at ``end``."""
        joined = self.joined
        n_old = len(self.decoding) - len(joined)
        if n_old > 0:
            self.itl_values.append(gap_old)
            self.itl_weights.append(n_old)
        for t in joined:
            self.itl_values.append(end - t)
            self.itl_weights.append(1)
        joined.clear()
        self.last_decode_end = end

    def _complete_due(self, now: int) -> None:
        heap, G = self.finish_heap, self.G
        while heap and heap[0][0] <= G:
            finish_g, key, seq = heapq.heappop(heap)
            if not (seq.live and seq.key == key and seq.client is self):
                continue  # stale: the sequence was preempted or cancelled
            seq.generated = seq.target
            self._leave_decode(seq)
            parent = seq.parent
            if parent is None:
                self._finish(seq, now)
                continue
            parent.branches_left -= 1
            if parent.branches_left == 0:  # the first k branches are done: the rest are cancelled
                parent.generated = seq.target
                self._release(parent)
                self._finish(parent, now)

    def _finish(self, req: Request, now: int) -> None:
        self.committed -= req.reserved
        req.reserved = 0
        req.fork_at = -1
        self.completed_total += 1
        self.sim.stage_done(req, self, now)

    # ------------------------------------------------------------------ aborts

    def cancel(self, req: Request, now: int) -> None:
        """Abort: take ``req`` out of this client wherever it is and free its KV (no-op if it is not here).

        Like vLLM, a step in flight still runs to its end (its time is spent) but no longer for
        ``req``; its KV blocks are free from now. Its own cached blocks are dropped (nobody
        reuses them); its shared prefix stays cached for its group.
        """
        if req in self.in_frontend:
            del self.in_frontend[req]
            return
        if req in self.prefilling:
            self.prefilling.remove(req)
            if self.busy and self.run is None:
                self.step_chunks[:] = [c for c in self.step_chunks if c[0] is not req]  # the step's payload
            self._release(req)
        elif req.live or any(c.live for c in req.children or ()):
            self._cancel_decoding(req, now)
        elif req in self.waiting:
            self.waiting.remove(req)
        else:
            return
        if self.cache is not None:
            self.cache.discard(("r", req.idx))
        self.poke(now)

    def _cancel_decoding(self, req: Request, now: int) -> None:
        """Remove a decoding request (or its branches). A closed-form run in flight is cut at ``now``:
        the steps that ended are accounted, and the step in flight is its last, without ``req``."""
        run = self.run
        if run is None:
            self._release(req, 1 if self.step_decodes else 0)  # a stepped decode charged its block at start
            return
        j = run.done_by(now)
        if j:
            self._apply_run_steps(j)
        self._release(req)
        self.version += 1
        if j >= run.k:  # the run ended at this instant and its end event has not run: close it here
            self._close_run(now)
            return
        first = self.phase[self.G % self.bs]  # the step in flight's new blocks, without req's
        start = int(run.ends[j - 1]) if j else run.start
        self.run = _Run(start, run.ends[j:j + 1], run.durs[j:j + 1], run.energies[j:j + 1],
                        np.asarray([first], dtype=np.int64))
        self.sim.kernel.schedule(int(run.ends[j]), PRIO_STATE, self._end_run, self.version)

    # ------------------------------------------------------------------ cluster changes and views

    def fail(self, now: int) -> list[Request]:
        """Stop at once; returns every request it held (the caller decides their fate)."""
        held = list(self.waiting) + self.prefilling
        held += list(dict.fromkeys(s.parent or s for s in self.decoding.values()))
        for req in held:
            self._release(req)
        self.waiting.clear()
        self.prefilling.clear()
        self.finish_heap.clear()
        self.cow.clear()
        if self.cache is not None:
            self.cache.clear()
        self.sharing.clear()
        self.status = "failed"
        self.asking = 0
        self.version += 1
        self.busy = False
        self.run = None
        return held

    def is_idle(self) -> bool:
        return not (self.busy or self.waiting or self.prefilling or self.decoding)

    def kv_used_now(self, now: int) -> int:
        run = self.run
        if run is None:
            return self.used_blocks
        j = run.done_by(now)
        return self.used_blocks + (int(run.blocks_cum[j - 1]) if j else 0)

    def load(self) -> int:
        """Requests queued or running (join-shortest-queue's measure)."""
        return len(self.waiting) + len(self.prefilling) + len(self.decoding) + len(self.in_frontend)

    def num_running(self) -> int:
        return len(self.decoding) + len(self.prefilling)

    def running_tokens(self) -> int:
        """Tokens held in KV by the running batch (decode contexts plus prefilled prompt parts)."""
        return self.sum_base + len(self.decoding) * self.G + sum(r.prefilled for r in self.prefilling)

    def waiting_prompt_tokens(self) -> int:
        return sum(r.prompt + r.generated for r in self.waiting)
