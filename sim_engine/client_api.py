"""What the parts of the engine may rely on from each other: the client protocol and the simulation context.

Why: clients (LLM or task), the router, the views and the summary used to reach into each
other's classes (the router typed its candidates as ``LLMClient``, task clients carried
zeroed copies of the LLM client's KV fields, and clients imported ``Simulation`` back for
their type hints). Here each side states the little it needs:

* ``Client``: any serving instance, as the simulation, the router and the views use it;
* ``LLMCounters``: the KV-cache and token counters only LLM clients have (zeros otherwise),
  read through ``llm_counters`` so nothing has to fake them;
* ``SimContext``: the callbacks a client makes into the simulation (and its kernel).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .kernel import Kernel
    from .request import Request
    from .spec import ClientSpec


class ClientStatus(enum.StrEnum):
    """Life cycle of a client; equal to its plain string (``ClientStatus.ACTIVE == "active"``)."""

    ACTIVE = "active"  # takes new work
    PENDING = "pending"  # added for a later time, not yet active
    DRAINING = "draining"  # finishes its work, takes none
    REMOVED = "removed"  # gone once idle
    FAILED = "failed"  # its work was dropped


@runtime_checkable
class Client(Protocol):
    """A serving instance as the simulation, the router, the views and the summary see it."""

    index: int  # position in the simulation's client list (routing ties break on it)
    id: str
    spec: ClientSpec
    model: str  # served model name ("" for retrieval and generic clients)
    batching: str  # the scheduler's batching policy, or the role of a task client
    status: str  # a ClientStatus value
    waiting: Sequence[Request]
    busy_ns: int
    energy_j: float
    idle_w: float
    steps: int
    seq_sum: int
    completed_total: int
    last_step_s: float

    def rejects(self, req: Request) -> tuple[str, str]: ...
    def submit(self, req: Request, now: int) -> None: ...
    def load(self) -> int: ...
    def is_idle(self) -> bool: ...
    def kv_used_now(self, now: int) -> int: ...
    def waiting_prompt_tokens(self) -> int: ...
    def running_tokens(self) -> int: ...
    def num_running(self) -> int: ...
    def fail(self, now: int) -> list[Request]: ...
    def cancel(self, req: Request, now: int) -> None: ...  # abort: forget req wherever it is here


class SimContext(Protocol):
    """The simulation as a client sees it: its kernel and the callbacks of a stage's life."""

    kernel: Kernel

    def stage_done(self, req: Request, client: Any, now: int) -> None: ...
    def drop(self, req: Request, client: Any, now: int, reason: str) -> None: ...
    def note_first_token(self, req: Request, client: Any, now: int) -> None: ...
    def note_preempted(self, req: Request, client: Any, now: int) -> None: ...
    def ask_batch(self, client: Any, now: int) -> int: ...  # external batching: stop for a batch decision
    def trace_step(self, client: Any, start: int, dur: int, n_prefill: int, n_dec: int, n_tok: int,
                   k: int = 1) -> None: ...


@dataclass(frozen=True)
class LLMCounters:
    """KV-cache and token counters of an LLM client (all zero for task clients)."""

    total_blocks: int = 0
    kv_peak: int = 0
    kv_integral: float = 0.0  # used blocks x ns, summed over steps
    token_sum: int = 0  # tokens over all steps
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    preemptions_total: int = 0
    prefix_cache_queries: int = 0  # prompt tokens looked up in the GPU prefix cache ...
    prefix_cache_hits: int = 0  # ... and found there
    itl_values: Any = ()  # array('q') of gaps (ns) between token deliveries to a stream ...
    itl_weights: Any = ()  # ... and how many saw each (a delivery is a token, or a multi-step group's burst)


NO_LLM_COUNTERS = LLMCounters()


def kv_total_blocks(client: Client) -> int:
    """KV blocks of an LLM client (0 for others): ``llm_counters(client).total_blocks`` without the copy."""
    return client.total_blocks if client.spec.is_llm else 0  # type: ignore[attr-defined]


def llm_counters(client: Client) -> LLMCounters:
    """The LLM counters of a client, or zeros when it is not an LLM client."""
    if not client.spec.is_llm:
        return NO_LLM_COUNTERS
    c: Any = client
    return LLMCounters(c.total_blocks, c.kv_peak, c.kv_integral, c.token_sum, c.prompt_tokens_total,
                       c.generation_tokens_total, c.preemptions_total, c.prefix_queries, c.prefix_hits,
                       c.itl_values, c.itl_weights)
