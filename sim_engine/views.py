"""The values the co-simulation API hands out: stop reasons, events, decisions, state views."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

STAGE_GROUPS = ("rag", "kv_retrieval", "route", "prefill", "decode", "reasoning", "generic")
GROUP_CODES = {g: i for i, g in enumerate(STAGE_GROUPS)}
STAGE_KINDS = ("llm", "prefill", "decode", "embed", "search", "rerank", "kv_retrieval", "generic", "route")
KIND_CODES = {k: i for i, k in enumerate(STAGE_KINDS)}


class StopReason(enum.Enum):
    TARGET_REACHED = "target_reached"
    DECISION_NEEDED = "decision_needed"
    WAKEUP = "wakeup"
    IDLE = "idle"
    EVENT_BOUND = "event_bound"


class Event(NamedTuple):
    time_ns: int
    kind: str  # arrival routed first_token completed dropped aborted preempted decision wakeup cluster
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
    prefix_key: str | None = None


@dataclass(frozen=True)
class DecisionAnswer:
    """One answer to a pending decision (see ``Simulation.decide_many``)."""

    decision_id: int
    action: str = "route"  # route | defer | drop
    client_id: str | None = None  # route: a candidate client (or, for a route stage, a model name)
    retry_after_ns: int | None = None  # defer: ask again this long from now (default 1 ms)


@dataclass(frozen=True)
class BatchRequestView:
    """One request on a client with ``batching: external``, as its batch decision shows it."""

    request_id: str
    prompt_tokens: int
    output_tokens: int  # tokens the LLM stage produces (per branch)
    prefill_tokens: int  # to prefill: the prompt, + generated tokens on a recompute (decoding: if preempted now)
    computed_tokens: int  # tokens in KV now (prefilled part of the prompt, or the decode context)
    generated_tokens: int
    prefix_key: str | None
    arrival_ns: int
    decoding: bool  # running and past its prefill: it takes exactly 1 token per step
    sequences: int  # decode sequences (reasoning branches); a decode step takes this many tokens of the budget
    kv_blocks: int  # KV blocks it holds (freed if preempted)
    next_decode_blocks: int  # new KV blocks its next decode step takes (0 unless decoding)


@dataclass(frozen=True)
class BatchDecision:
    """A step boundary of a client with ``batching: external``: what runs in the next step?

    ``running`` is in admission order (the last is the newest); ``waiting`` in queue order.
    """

    decision_id: int
    client_id: str
    time_ns: int
    token_budget: int
    max_seqs: int
    block_size: int
    free_blocks: int
    total_blocks: int
    waiting: tuple[BatchRequestView, ...]
    running: tuple[BatchRequestView, ...]


@dataclass(frozen=True)
class BatchItem:
    """One request of a step and the tokens it processes (a prefill chunk, or 1 for a decode)."""

    request_id: str
    tokens: int


@dataclass(frozen=True)
class BatchAnswer:
    """The answer to a batch decision (see ``Simulation.decide_batch``).

    ``preempt`` is applied first, in order (each victim goes to the head of the waiting
    queue, so the last one listed runs first). ``repeat_decodes`` (decode-only steps only)
    repeats the step until a request arrives, one finishes or the next step's KV does not fit.
    """

    decision_id: int
    schedule: tuple[BatchItem, ...] = ()
    preempt: tuple[str, ...] = ()
    repeat_decodes: bool = False


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
    links: dict[str, dict] = field(default_factory=dict)  # link id -> bytes_moved, busy_ns, utilization, active
    aborted: int = 0  # ended by Simulation.abort

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
