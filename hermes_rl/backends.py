"""One small interface over the two ways an environment can drive a simulated world.

``LocalWorld`` steps a ``sim_engine.Simulation`` in this process (fast); ``RemoteWorld``
steps a session on a HERMES server through ``client_sdk`` (any machine). Both hand the
environments the same plain views, so an env's observations and rewards do not depend
on where the simulation runs (a test checks they are identical for the same seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# stage kinds, in the engine's order (sim_engine.views.STAGE_KINDS; repeated here so the
# remote path needs no sim_engine import)
STAGE_KINDS = ("llm", "prefill", "decode", "embed", "search", "rerank", "kv_retrieval", "generic", "route")


@dataclass(frozen=True)
class DecisionView:
    decision_id: str
    stage_kind: str
    model: str
    candidates: tuple[str, ...]
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ClientLoad:
    id: str
    hardware: str
    model: str
    role: str
    status: str
    num_waiting: int
    num_running: int
    kv_usage: float
    waiting_prompt_tokens: int
    running_tokens: int
    est_step_s: float
    busy_s: float


@dataclass(frozen=True)
class Ended:
    """A request that completed (latencies set) or was dropped (``dropped`` True)."""

    client_id: str
    dropped: bool
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    e2e_s: float = 0.0


@dataclass
class Step:
    reason: str  # target_reached, decision_needed, wakeup, idle, event_bound
    time_ns: int
    ended: list[Ended] = field(default_factory=list)


@dataclass(frozen=True)
class WorldState:
    time_ns: int
    in_flight: int
    injected: int
    clients: tuple[ClientLoad, ...]


class World(Protocol):
    def advance(self, until_ns: int | None = None) -> Step: ...
    def decisions(self) -> list[DecisionView]: ...
    def route(self, decision_id: str, target: str) -> None: ...
    def state(self) -> WorldState: ...
    def add_wakeup(self, time_ns: int, tag: str = "") -> None: ...
    def change_cluster(self, time_ns: int, action: str, client_id: str,
                       client: Mapping[str, Any] | None = None) -> None: ...
    def summary(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class LocalWorld:
    """A Simulation in this process."""

    def __init__(self, spec: Mapping[str, Any] | str, seed: int, overrides: Mapping[str, Any] | None = None):
        from sim_engine import Simulation, load_spec

        self.sim = Simulation(load_spec(spec if isinstance(spec, str) else dict(spec),
                                        {**(overrides or {}), "seed": seed}), record_events=True)

    def advance(self, until_ns: int | None = None) -> Step:
        r = self.sim.advance(until_ns=until_ns)
        ended = []
        for e in r.events:
            if e.kind == "completed":
                d = e.data
                ended.append(Ended(e.client_id, False, d["ttft_s"], d["tpot_s"], d["e2e_s"]))
            elif e.kind == "dropped":
                ended.append(Ended(e.client_id, True))
        return Step(r.reason.value, r.time_ns, ended)

    def decisions(self) -> list[DecisionView]:
        return [DecisionView(str(d.decision_id), d.stage_kind, d.model, tuple(d.candidates), d.prompt_tokens,
                             d.output_tokens) for d in self.sim.pending_decisions()]

    def route(self, decision_id: str, target: str) -> None:
        self.sim.decide(int(decision_id), "route", target)

    def state(self) -> WorldState:
        s = self.sim.state()
        return WorldState(s.time_ns, s.in_flight, s.injected, tuple(
            ClientLoad(c.id, c.hardware, c.model, c.role, c.status, c.num_waiting, c.num_running, c.kv_usage,
                       c.waiting_prompt_tokens, c.running_tokens, c.est_step_s, c.busy_s) for c in s.clients))

    def add_wakeup(self, time_ns: int, tag: str = "") -> None:
        self.sim.add_wakeup(time_ns, tag)

    def change_cluster(self, time_ns: int, action: str, client_id: str,
                       client: Mapping[str, Any] | None = None) -> None:
        self.sim.change_cluster(time_ns, action, client_id, dict(client) if client is not None else None)

    def summary(self) -> dict[str, Any]:
        return self.sim.summary()

    def close(self) -> None:
        pass


class RemoteWorld:
    """A session on a HERMES server, driven over the bidirectional stream."""

    def __init__(self, client: Any, spec: Mapping[str, Any] | str, seed: int,
                 overrides: Mapping[str, Any] | None = None):
        from client_sdk import pb

        self._pb = pb
        self._reasons = {v: k.removeprefix("STOP_REASON_").lower() for k, v in pb.StopReason.items()}
        kinds = [pb.EVENT_KIND_COMPLETED, pb.EVENT_KIND_DROPPED]
        self.session = client.create_session(spec if isinstance(spec, str) else dict(spec), seed=seed,
                                             overrides=dict(overrides or {}), event_kinds=kinds, stream=True)
        self._decisions: list[DecisionView] = []

    def advance(self, until_ns: int | None = None) -> Step:
        reply = self.session.advance(until_ns=until_ns)
        ended = []
        for e in reply.events:
            if e.kind == self._pb.EVENT_KIND_COMPLETED:
                r = e.result
                ended.append(Ended(e.client_id, False, r.ttft_s, r.tpot_s, r.e2e_s))
            elif e.kind == self._pb.EVENT_KIND_DROPPED:
                ended.append(Ended(e.client_id, True))
        self._decisions = [self._view(d) for d in reply.decisions]
        return Step(self._reasons[reply.reason], reply.time_ns, ended)

    @staticmethod
    def _view(d: Any) -> DecisionView:
        return DecisionView(d.decision_id, d.stage_kind, d.model, tuple(d.candidates), d.prompt_tokens,
                            d.output_tokens)

    def decisions(self) -> list[DecisionView]:
        """The pending decisions (those the last Advance reply carried, else asked for)."""
        if self._decisions:
            out, self._decisions = self._decisions, []
            return out
        return [self._view(d) for d in self.session.decisions()]

    def route(self, decision_id: str, target: str) -> None:
        self.session.route(decision_id, target)

    def state(self) -> WorldState:
        s = self.session.state()
        return WorldState(s.now_ns, s.in_flight, s.injected, tuple(
            ClientLoad(c.id, c.hardware, c.model, c.role, c.status, c.num_waiting, c.num_running, c.kv_usage,
                       c.waiting_prompt_tokens, c.running_tokens, c.est_step_s, c.busy_s) for c in s.clients))

    def add_wakeup(self, time_ns: int, tag: str = "") -> None:
        self.session.add_wakeup(time_ns, tag)

    def change_cluster(self, time_ns: int, action: str, client_id: str,
                       client: Mapping[str, Any] | None = None) -> None:
        self.session.change_cluster(time_ns, action, client_id, client)

    def summary(self) -> dict[str, Any]:
        return self.session.summary()

    def close(self) -> None:
        self.session.close()


def open_world(backend: str, spec: Mapping[str, Any] | str, seed: int, overrides: Mapping[str, Any] | None,
               target: str | None, token: str | None, remote_client: Any = None) -> tuple[World, Any]:
    """A world on ``backend`` ("local" or "remote"); returns it and the SDK client to reuse (remote)."""
    if backend == "local":
        return LocalWorld(spec, seed, overrides), None
    if backend != "remote":
        raise ValueError(f"backend: unknown value {backend!r}; expected local or remote")
    if remote_client is None:
        if not target:
            raise ValueError("target: the remote backend needs a server address (host:port)")
        from client_sdk import Client

        remote_client = Client(target, token)
    return RemoteWorld(remote_client, spec, seed, overrides), remote_client
