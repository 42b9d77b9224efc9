"""Run one Simulation against the wall clock and track the requests the HTTP front put into it.

Simulated time is ``sim0 + (wall - wall0) x time_scale``; the engine is only ever advanced
to the simulated time of *now*, never past it, so everything it reports has happened.
Requests arrive by ``Simulation.inject`` at the current simulated time, so the front uses only
the public co-simulation API: a listener's request is pinned to its client
(``RequestInput.client_id``); a gateway request has no pin and goes through the spec's
pipeline and router (when the spec's router is ``external``, ``background`` answers or holds its
decisions).

Token times. The engine reports a request's first token and its completion exactly, but
advances runs of decode steps in closed form, so it has no event per token. The pacer
releases the tokens in between at the client's current step time (the client's
``last_step_s``, read whenever the engine moved): one tick per client and step, anchored
at the client's latest first-token or completion event (both fall on step boundaries), gives
every request in its batch one token, as the batch's step does; never more than
``output + thinking - 1`` tokens go out before the completion, and whatever is left is released at the
simulated completion time. At light load this matches the engine's
step times; when other requests join or leave the batch it follows the new step time from
the next token on (docs/FLEET.md). A request with reasoning generates its thinking tokens
first: they go out first (the front streams them as ``reasoning_content``), the answer's
tokens are the last ``output`` of the ``output + thinking`` the engine makes, and the step
cadence follows the client of the request's latest LLM stage.

Lag is how late the pacer delivered what was due: the wall time after a pass over the
engine minus the wall time the pass was due at.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sim_engine import Simulation
from sim_engine.request import RequestInput
from sim_engine.views import StopReason

NS = 1_000_000_000
MAX_TICK_S = 0.02  # longest wall-clock gap between passes when nothing is due (an idle front costs ~nothing)
LAG_WARN_S = 0.05
LAG_WARN_EVERY_S = 10.0
LAG_WINDOW_S = 1.0

log = logging.getLogger("hermes.fleet")


@dataclass(eq=False)
class Job:
    """One engine request (one choice of one prompt of an HTTP call)."""

    rid: str
    client_id: str  # the client of its latest LLM stage ("" until a gateway request reaches one)
    call: Call
    index: int  # choice index in the response
    prompt: int
    output: int
    released: int = 0  # tokens (thinking, then answer) handed to the HTTP side so far
    thinking: int = 0  # reasoning tokens the engine generates before the answer (the first `thinking` released)
    generated: int = 0  # engine tokens (thinking + answer) so far, as paced
    sent: int = 0  # tokens the HTTP side has written
    clock_ns: int = -1  # simulated time of the last released token
    cap: int = 0  # engine tokens paced before the completion releases the rest (output + thinking - 1)
    mark: int = -1  # the pass that last queued it for writing (one write per job and pass)
    ticking: str = ""  # the client whose steps pace it now ("" once capped or ended)
    first_ns: int = -1
    done_ns: int = -1
    error: str = ""  # drop reason
    done: bool = False


@dataclass(eq=False)
class Call:
    """One HTTP request: its jobs and a waker for the handler."""

    jobs: list[Job] = field(default_factory=list)
    arrival_ns: int = 0
    pending: int = 0  # jobs not ended
    # writes a job's newly released tokens itself (True) instead of waking the handler (False)
    sink: Callable[[Job], bool] | None = None
    _waiter: asyncio.Future | None = None

    def notify(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        """Until the pacer has news for this call (new tokens, an end)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    @property
    def finished(self) -> bool:
        return self.pending == 0


class Pacer:
    """The wall-clock driver of one Simulation (single asyncio thread: no locks)."""

    def __init__(self, sim: Simulation, time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.sim, self.scale, self.clock = sim, float(time_scale), clock
        self.wall0 = clock()
        self.sim0 = sim.now_ns
        self.jobs: dict[str, Job] = {}
        self._due: list[tuple[int, str]] = []  # (simulated time of a client's next step tick, client id)
        self._tick_at: dict[str, int] = {}  # client id -> its next tick (heap entries that differ are stale)
        self._ticking: dict[str, dict[Job, None]] = {}  # client id -> jobs its ticks release tokens to
        self._unsent: list[Job] = []  # jobs with tokens released in this pass (each once), for their sinks
        self._next_id = 0
        self.step_ns: dict[str, int] = {}  # client id -> current step estimate
        self.client_status: dict[str, str] = {}
        self.lag_last_s = 0.0
        self.lag_max_s = 0.0  # worst lag ever (benchmarks reset it)
        self._win = (clock(), 0.0, 0.0)  # (window start, worst lag in it, worst in the previous window)
        self.passes = 0
        self._last_warn = -1e18
        self._waiter: asyncio.Future | None = None
        self._wake_due_wall: float | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        # answers (or holds) the decisions of unpinned requests (workload, gateway) when the spec's router
        # is external: the built-in round robin, or the router desk of --router-port (server/fleet/router.py)
        self.background: Callable[[Simulation], None] | None = None
        # sees the engine events of every pass (the router desk keeps them for its routers' Advance replies)
        self.on_events: Callable[[list], None] | None = None
        self._refresh_clients()

    # ---------------------------------------------------------------- clock

    def sim_now_target(self, wall: float | None = None) -> int:
        wall = self.clock() if wall is None else wall
        return self.sim0 + int((wall - self.wall0) * self.scale * NS)

    def wall_of(self, sim_ns: int) -> float:
        return self.wall0 + (sim_ns - self.sim0) / NS / self.scale

    # ---------------------------------------------------------------- intake

    def submit(self, client_id: str | None, model: str, prompts: tuple[int, ...], outputs: list[int], n: int,
               pipeline: str | None = None) -> Call:
        """Inject one HTTP call's requests at the current simulated time (atomic: all or none).

        With a ``client_id`` every request is pinned to that client on ``pipeline`` (the fleet's
        direct pipeline by default); without one it goes through ``pipeline`` (None: the spec's
        workload mix) routed by the spec's router, as a request of the spec's workload would."""
        if client_id is not None and pipeline is None:
            pipeline = FLEET_PIPELINE
        arrival = max(self.sim.now_ns, self.sim_now_target())
        call = Call(arrival_ns=arrival)
        inputs = []
        k = 0
        for p in prompts:
            for _ in range(n):
                rid = f"f{self._next_id}"
                self._next_id += 1
                inputs.append(RequestInput(arrival, p, outputs[k], model=model, pipeline=pipeline,
                                           request_id=rid, client_id=client_id))
                call.jobs.append(Job(rid, client_id or "", call, k, p, outputs[k], cap=outputs[k] - 1))
                k += 1
        self.sim.inject(inputs)  # raises (SpecError/LimitError) before adding anything
        call.pending = len(call.jobs)
        for job in call.jobs:
            self.jobs[job.rid] = job
        self.wake()
        return call

    def abort(self, call: Call) -> list[Job]:
        """The HTTP caller left: abort the call's requests still in the engine (their KV and queue
        places are freed at once, no more tokens are paced); returns the jobs aborted."""
        gone = [job for job in call.jobs if not job.done and self.sim.abort(job.rid)]
        for job in gone:
            job.error = "abort"
            self._end(job)
        return gone

    # ---------------------------------------------------------------- the loop

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            self._wake_due_wall = self.clock()
            w.set_result(None)

    def start(self) -> None:
        """Start pacing: simulated time now runs with the wall clock from here."""
        self.wall0, self.sim0 = self.clock(), self.sim.now_ns
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hermes-fleet-pacer")

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due_wall = self.clock()
        while not self._stopping:
            self.step(due_wall)
            next_wall = self._next_wake_wall()
            delay = next_wall - self.clock()
            self._wake_due_wall = None
            if delay > 0:
                self._waiter = loop.create_future()
                handle = loop.call_at(loop.time() + delay, _resolve, self._waiter)
                await self._waiter
                handle.cancel()
                self._waiter = None
            else:
                await asyncio.sleep(0)  # let the HTTP side run between passes
            due_wall = self._wake_due_wall if self._wake_due_wall is not None else next_wall

    def _next_wake_wall(self) -> float:
        t = self.clock() + MAX_TICK_S
        nxt = self.sim.kernel.next_time()
        if nxt is not None:
            t = min(t, self.wall_of(nxt))
        if self._due:
            t = min(t, self.wall_of(self._due[0][0]))
        return t

    def step(self, due_wall: float | None = None) -> None:
        """One pass: advance the engine to now, hand out what happened, measure the lag."""
        target = self.sim_now_target()
        if target < self.sim.now_ns:
            target = self.sim.now_ns
        sim = self.sim
        events = []
        moved = False
        while True:
            self._answer_decisions()
            res = sim.advance(until_ns=target)
            events.extend(res.events)
            moved = moved or res.events_processed > 0
            if res.reason is not StopReason.DECISION_NEEDED and res.reason is not StopReason.WAKEUP:
                break  # a wake-up is the router desk's: an answer or a deadline is due (server/fleet/router.py)
        if moved:
            self._refresh_clients()
        if events and self.on_events is not None:
            self.on_events(events)
        for ev in events:
            self._release_due(ev.time_ns)  # ticks before an event run first: it may re-anchor them
            self._on_event(ev)
        self._release_due(target)
        self._flush()
        self.passes += 1
        if due_wall is not None:
            lag = max(0.0, self.clock() - due_wall)
            self._note_lag(lag)
            if lag > LAG_WARN_S:
                now = self.clock()
                if now - self._last_warn > LAG_WARN_EVERY_S:
                    self._last_warn = now
                    log.warning("fleet is %.0f ms behind the wall clock (time scale %g): the host cannot keep up",
                                lag * 1e3, self.scale)

    def _note_lag(self, lag: float) -> None:
        self.lag_last_s = lag
        self.lag_max_s = max(self.lag_max_s, lag)
        start, cur, prev = self._win
        now = self.clock()
        if now - start >= LAG_WINDOW_S:
            start, prev, cur = now, (cur if now - start < 2 * LAG_WINDOW_S else 0.0), 0.0
        self._win = (start, max(cur, lag), prev)

    def lag_gauge(self) -> float:
        """The worst lag over the last one to two seconds (the gauge's value)."""
        start, cur, prev = self._win
        if self.clock() - start >= 2 * LAG_WINDOW_S:
            return self.lag_last_s
        return max(cur, prev)

    def _answer_decisions(self) -> None:
        """Only with the spec's router external (listeners' requests are pinned): `background` answers
        or holds every pending decision; without one they are dropped."""
        sim = self.sim
        if self.background is not None:
            self.background(sim)
        for d in sim.pending_decisions():
            sim.decide(d.decision_id, "drop")

    def _refresh_clients(self) -> None:
        """Step times and status of every client (read from the engine's clients: sim.state() would
        also sum every queue, which costs more than the rest of a pass)."""
        for c in self.sim.clients:
            if c.last_step_s > 0:
                self.step_ns[c.id] = max(1, int(c.last_step_s * NS))
            self.client_status[c.id] = str(c.status)

    def _on_event(self, ev) -> None:
        kind = ev.kind
        if kind in ("first_token", "completed") and ev.client_id in self._tick_at:
            self._anchor(ev.client_id, ev.time_ns)  # the client's batch stepped at this time
        job = self.jobs.get(ev.request_id)
        if job is None:
            return
        if kind == "routed":
            if (ev.data or {}).get("stage") in LLM_STAGES:
                job.client_id = ev.client_id
                if job.ticking:
                    self._tick_on(job, ev.client_id, ev.time_ns)
        elif kind == "arrival":
            job.thinking = (ev.data or {}).get("thinking_tokens", 0)
            job.cap = job.output + job.thinking - 1
        elif kind == "first_token":
            if job.first_ns >= 0:  # a later LLM stage of the same request (P/D, a reasoning loop)
                return
            job.first_ns = job.clock_ns = ev.time_ns
            self._generated(job, 1)
            if job.generated < job.cap:
                self._tick_on(job, job.client_id, ev.time_ns)
        elif kind == "completed":
            job.done_ns = ev.time_ns
            job.released = job.generated = job.output + job.thinking
            if job.first_ns < 0:
                job.first_ns = ev.time_ns
            self._end(job)
        elif kind == "dropped":
            job.error = (ev.data or {}).get("reason", "dropped")
            self._end(job)

    def _generated(self, job: Job, n: int) -> None:
        """The engine has made `n` of the job's tokens (thinking first, then answer; `_release_due` inlines
        this for speed): they go out at the end of the pass (`_flush`)."""
        job.generated = n
        if n > job.released:
            job.released = n
            if job.mark != self.passes:
                job.mark = self.passes
                self._unsent.append(job)

    def _flush(self) -> None:
        """One write per stream and pass (every token released in a pass is due by the same wall instant):
        the new tokens go out through the call's sink when it has one (no handler wake-up per
        token), else (or when the sink refuses) the woken handler writes them."""
        for job in self._unsent:
            if job.done:  # an ended job's handler writes its end
                continue
            sink = job.call.sink
            if sink is None or not sink(job):
                job.call.notify()
        self._unsent.clear()

    def _end(self, job: Job) -> None:
        job.done = True
        self._untick(job)
        del self.jobs[job.rid]
        job.call.pending -= 1
        job.call.notify()

    # ---------------------------------------------------------------- step ticks

    def _tick_on(self, job: Job, client_id: str, now_ns: int) -> None:
        """Pace `job` by `client_id`'s steps from now on."""
        if job.ticking and client_id not in self.step_ns:  # a decode client that has not stepped yet:
            self.step_ns[client_id] = self.step_ns.get(job.ticking, 1)  # the previous client's step until it has
        self._untick(job)
        job.ticking = client_id
        jobs = self._ticking.setdefault(client_id, {})
        jobs[job] = None
        if client_id not in self._tick_at:
            self._anchor(client_id, now_ns)

    def _untick(self, job: Job) -> None:
        if job.ticking:
            jobs = self._ticking[job.ticking]
            del jobs[job]
            if not jobs:
                del self._ticking[job.ticking], self._tick_at[job.ticking]
            job.ticking = ""

    def _anchor(self, client_id: str, t_ns: int) -> None:
        nxt = t_ns + self.step_ns.get(client_id, 1)
        self._tick_at[client_id] = nxt
        heapq.heappush(self._due, (nxt, client_id))

    def _release_due(self, now_ns: int) -> None:
        """Run every client tick due by `now_ns`: each gives one token to each job the client paces.
        The per-token work is this loop's body (`_generated` inlined): it runs ~50,000 times a second
        at the front's capacity."""
        due, tick_at, ticking = self._due, self._tick_at, self._ticking
        unsent, mark = self._unsent, self.passes
        while due and due[0][0] <= now_ns:
            t, cid = heapq.heappop(due)
            if tick_at.get(cid) != t:
                continue  # re-anchored or idle since
            capped = None
            for job in ticking[cid]:
                job.clock_ns = t
                n = job.generated = job.released = job.generated + 1
                if job.mark != mark:
                    job.mark = mark
                    unsent.append(job)
                if n >= job.cap:
                    if capped is None:
                        capped = []
                    capped.append(job)
            if capped is not None:
                for job in capped:
                    self._untick(job)
            if cid in tick_at:
                self._anchor(cid, t)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


FLEET_PIPELINE = "_fleet_direct"
LLM_STAGES = ("llm", "prefill", "decode")  # stages whose client paces the request's tokens
