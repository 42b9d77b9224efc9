"""Requests in flight, and the compact columnar record of the ones that ended."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RequestInput:
    """A request injected from outside (co-simulation) or drawn from a workload."""

    arrival_ns: int
    prompt_tokens: int
    output_tokens: int
    model: str | None = None
    pipeline: str | None = None
    request_id: str | None = None
    prefix_key: str | None = None  # cacheable prefix identity (kv_retrieval); same key, same prefix
    client_id: str | None = None  # pin: the request's LLM stages this client can serve go to it, unrouted


class Request:
    """One request while it is in flight. Dropped after it ends (records keep its numbers)."""

    __slots__ = (
        "idx", "rid", "arrival_ns", "prompt", "output", "model",
        # scheduling state on the LLM client serving it
        "client", "enqueue_ns", "scheduled_ns", "first_token_ns", "prefilled", "generated",
        "blocks", "reserved", "base", "finish_g", "admit_seq", "preemptions", "live",
        # pipeline progress
        "pipeline", "stage", "prev_client", "stage_ready_ns", "stage_start_ns", "bytes_in", "out_bytes",
        # LLM stage shape: what this client does with it, and reasoning branches
        "mode", "cached", "key", "parent", "children", "branches_left", "shared", "prefix_key", "prefix_len", "fork_at",
        "resume_extra",
        "target", "difficulty", "segments", "home", "loop_context", "pin",
        # cancellation: set by Simulation.abort; the network transfer carrying it, if any (0: none)
        "aborted", "transfer",
    )

    def __init__(self, idx: int, rid: str, arrival_ns: int, prompt: int, output: int, model: str):
        self.idx = idx  # dense index, the row of this request in the records
        self.rid = rid  # external id
        self.arrival_ns = arrival_ns
        self.prompt = prompt
        self.output = output
        self.model = model
        self.client = None
        self.enqueue_ns = -1
        self.scheduled_ns = -1
        self.first_token_ns = -1
        self.prefilled = 0  # tokens of the (possibly recomputed) prompt already in KV
        self.generated = 0  # output tokens produced so far
        self.blocks = 0  # KV blocks held
        self.reserved = 0  # KV blocks set aside at admission for the whole request (reserve admission)
        self.base = 0  # context length minus the client's decode counter (see LLMClient)
        self.finish_g = 0  # decode counter value at which the last token is produced
        self.admit_seq = 0
        self.preemptions = 0
        self.live = False  # in the client's decode set
        self.pipeline = ()  # tuple of pipeline.Stage
        self.stage = 0
        self.prev_client = None  # client of the previous stage (data moves from there)
        self.stage_ready_ns = arrival_ns
        self.stage_start_ns = -1
        self.bytes_in = 0
        self.out_bytes = 0  # what the last finished stage hands to the next client
        self.mode = "llm"  # llm (prefill+decode) | prefill | decode
        self.cached = 0  # prompt tokens whose KV was fetched (kv_retrieval hit)
        self.key = 0  # per-client key in its decode set
        self.parent = None  # the request a reasoning branch belongs to
        self.children = None  # live reasoning branches of this request
        self.branches_left = 0  # branches still to finish before the stage ends
        self.shared = 0  # KV blocks a branch shares with its parent (freed by the parent)
        self.fork_at = -1  # tokens generated when the reasoning branches forked (-1: never forked)
        self.resume_extra = 0  # a preempted branching request: its branches' own tokens beyond one branch's
        self.prefix_key = None  # cacheable prefix identity (kv_retrieval)
        self.prefix_len = 0  # tokens of that prefix (its full KV blocks are shared in a GPU prefix cache)
        self.target = output  # tokens this LLM stage must produce (per branch)
        self.difficulty = 0.0
        self.segments = ()  # cumulative token targets of the thinking steps of a reasoning loop
        self.home = None  # LLM client of the last llm stage (a loop's next step stays there)
        self.loop_context = 0  # tokens in that client's KV when the last llm stage ended
        self.pin = None  # the client this request's LLM stages must run on (RequestInput.client_id)
        self.aborted = False  # ended by Simulation.abort: callbacks still scheduled for it do nothing
        self.transfer = 0  # id of the network transfer that last carried it (cancelled on abort)


STATUS_COMPLETED = 1
STATUS_DROPPED = 2
STATUS_ABORTED = 3  # the caller gave up on it (Simulation.abort)
STATUS_NAMES = {STATUS_COMPLETED: "completed", STATUS_DROPPED: "dropped", STATUS_ABORTED: "aborted"}


class RequestRecords:
    """Columnar per-request results: a few bytes per request, so a million fit easily."""

    COLUMNS = {
        "idx": "q", "status": "b", "client": "l", "arrival_ns": "q", "scheduled_ns": "q",
        "first_token_ns": "q", "finish_ns": "q", "prompt_tokens": "q", "output_tokens": "q",
        "preemptions": "l",
    }

    def __init__(self) -> None:
        self.cols = {name: array(code) for name, code in self.COLUMNS.items()}
        self.ids: list[str] = []
        self.drop_reasons: dict[int, str] = {}

    def add(self, req: Request, status: int, client_index: int, finish_ns: int, reason: str = "") -> None:
        c = self.cols
        c["idx"].append(req.idx)
        c["status"].append(status)
        c["client"].append(client_index)
        c["arrival_ns"].append(req.arrival_ns)
        c["scheduled_ns"].append(req.scheduled_ns)
        c["first_token_ns"].append(req.first_token_ns)
        c["finish_ns"].append(finish_ns)
        c["prompt_tokens"].append(req.prompt)
        c["output_tokens"].append(req.generated)
        c["preemptions"].append(req.preemptions)
        self.ids.append(req.rid)
        if reason:
            self.drop_reasons[len(self.ids) - 1] = reason

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self) -> dict[str, np.ndarray]:
        """The records as numpy arrays, in the order requests ended."""
        return {name: np.frombuffer(col, dtype=np.dtype(col.typecode)) if len(col) else
                np.zeros(0, dtype=np.dtype(col.typecode)) for name, col in self.cols.items()}


class StageRecords:
    """Columnar per-stage rows: where each stage of each request ran, when, and the bytes it received."""

    COLUMNS = {"idx": "q", "stage": "b", "kind": "b", "group": "b", "client": "l", "ready_ns": "q", "enqueue_ns": "q",
               "start_ns": "q", "end_ns": "q", "bytes_in": "q"}

    def __init__(self) -> None:
        self.cols = {name: array(code) for name, code in self.COLUMNS.items()}

    def add(self, req: Request, kind: int, group: int, client_index: int, end_ns: int) -> None:
        c = self.cols
        c["idx"].append(req.idx)
        c["stage"].append(req.stage)
        c["kind"].append(kind)
        c["group"].append(group)
        c["client"].append(client_index)
        c["ready_ns"].append(req.stage_ready_ns)
        start = req.stage_start_ns if req.stage_start_ns >= 0 else end_ns
        c["enqueue_ns"].append(min(max(req.enqueue_ns, req.stage_ready_ns), start))
        c["start_ns"].append(start)
        c["end_ns"].append(end_ns)
        c["bytes_in"].append(req.bytes_in)

    def __len__(self) -> int:
        return len(self.cols["idx"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.frombuffer(col, dtype=np.dtype(col.typecode)) if len(col) else
                np.zeros(0, dtype=np.dtype(col.typecode)) for name, col in self.cols.items()}
