"""``hermes/Routing-v0``: one step per routing decision of a simulation with an external router.

Each step answers the pending decision of one stage (any kind: llm, prefill, decode,
embed, search, rerank, kv_retrieval, generic, and route, whose candidates are models).
The action is an index into the decision's candidate list (``info["action_mask"]`` and
``action_masks()`` mark the valid ones). The observation holds one row per candidate
slot (its load) and the request's features; the reward is minus the latency of the
requests that ended since the previous step, plus penalties (see ``RoutingReward``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np

from .backends import STAGE_KINDS, ClientLoad, DecisionView, Ended, World, WorldState, open_world
from .specs import routing_spec

CANDIDATE_FEATURES = ("valid", "waiting", "running", "kv_usage", "waiting_prompt_tokens", "est_step_s",
                      "utilization", "recent_latency")
REQUEST_FEATURES = ("prompt_tokens", "output_tokens", "n_candidates") + tuple(f"kind_{k}" for k in STAGE_KINDS)
LATENCY_METRICS = ("e2e", "ttft", "tpot")
OBS_HIGH = 1e9  # features are loads, log-counts and seconds: finite, far below this


@dataclass(frozen=True)
class RoutingReward:
    """Reward = -(latency_weight x metric + slo_penalty if metric > slo_s) per ended request,
    -drop_penalty per dropped request, -invalid_action_penalty for a masked action."""

    metric: str = "e2e"
    latency_weight: float = 1.0
    slo_s: float | None = None
    slo_penalty: float = 1.0
    drop_penalty: float = 10.0
    invalid_action_penalty: float = 1.0

    @classmethod
    def from_config(cls, cfg: RoutingReward | Mapping[str, Any] | None) -> RoutingReward:
        if cfg is None or isinstance(cfg, RoutingReward):
            return cfg or cls()
        known = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in known:
                raise ValueError(f"reward.{key}: unknown field; expected one of {', '.join(sorted(known))}")
        out = cls(**cfg)
        if out.metric not in LATENCY_METRICS:
            raise ValueError(f"reward.metric: unknown value {out.metric!r}; expected one of "
                             f"{', '.join(LATENCY_METRICS)}")
        for key in ("latency_weight", "slo_penalty", "drop_penalty", "invalid_action_penalty"):
            v = getattr(out, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"reward.{key}: must be a finite number, got {v!r}")
        if out.slo_s is not None and not (isinstance(out.slo_s, (int, float)) and out.slo_s > 0):
            raise ValueError(f"reward.slo_s: must be > 0, got {out.slo_s!r}")
        return out

    def of(self, ended: list[Ended]) -> float:
        total = 0.0
        for e in ended:
            if e.dropped:
                total -= self.drop_penalty
                continue
            value = e.e2e_s if self.metric == "e2e" else e.ttft_s if self.metric == "ttft" else e.tpot_s
            total -= self.latency_weight * value
            if self.slo_s is not None and value > self.slo_s:
                total -= self.slo_penalty
        return total


class RoutingEnv(gym.Env):
    """Route every stage of a HERMES simulation; in-process (``backend="local"``) or on a server."""

    metadata = {"render_modes": []}

    def __init__(self, spec: Mapping[str, Any] | str | None = None, backend: str = "local",
                 target: str | None = None, token: str | None = None, max_candidates: int = 8,
                 reward: RoutingReward | Mapping[str, Any] | None = None, max_decisions: int | None = None,
                 overrides: Mapping[str, Any] | None = None, latency_ema: float = 0.2) -> None:
        self.spec_source = spec if spec is not None else routing_spec()
        self.backend, self.target, self.token = backend, target, token
        if backend not in ("local", "remote"):
            raise ValueError(f"backend: unknown value {backend!r}; expected local or remote")
        if max_candidates < 1:
            raise ValueError(f"max_candidates: must be >= 1, got {max_candidates}")
        self.max_candidates = max_candidates
        self.reward_cfg = RoutingReward.from_config(reward)
        self.max_decisions = max_decisions
        self.overrides = {**(overrides or {}), "router.policy": "external"}
        self.latency_ema = latency_ema
        n_obs = max_candidates * len(CANDIDATE_FEATURES) + len(REQUEST_FEATURES)
        self.observation_space = gym.spaces.Box(0.0, OBS_HIGH, shape=(n_obs,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(max_candidates)
        self._world: World | None = None
        self._remote_client: Any = None
        self._queue: list[DecisionView] = []
        self._decision: DecisionView | None = None
        self._state: WorldState | None = None
        self._recent: dict[str, float] = {}
        self._decisions = 0
        self._reward_acc = 0.0

    # ------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._close_world()
        sim_seed = int(self.np_random.integers(0, 2**31 - 1))
        self._world, self._remote_client = open_world(self.backend, self.spec_source, sim_seed, self.overrides,
                                                      self.target, self.token, self._remote_client)
        self._queue, self._recent, self._decisions = [], {}, 0
        self._reward_acc = 0.0
        done = self._next_decision()
        self._reward_acc = 0.0  # latency of requests that ended before any decision is nobody's doing
        return self._observe(done), self._info(done, sim_seed=sim_seed)

    def step(self, action: Any):
        if self._decision is None:
            raise RuntimeError("step() after the episode ended: call reset()")
        d = self._decision
        a = int(action)
        reward = 0.0
        invalid = not 0 <= a < len(d.candidates)
        if invalid:  # masked action: fall back to a valid one, and say so in the reward
            a %= len(d.candidates)
            reward -= self.reward_cfg.invalid_action_penalty
        self._world.route(d.decision_id, d.candidates[a])
        self._decisions += 1
        self._reward_acc = 0.0
        terminated = self._next_decision()
        reward += self._reward_acc
        truncated = not terminated and self.max_decisions is not None and self._decisions >= self.max_decisions
        info = self._info(terminated, chosen=d.candidates[a], invalid_action=invalid)
        return self._observe(terminated), float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Valid actions of the current decision (for maskable policies, e.g. sb3-contrib's)."""
        mask = np.zeros(self.max_candidates, dtype=np.int8)
        if self._decision is not None:
            mask[:min(len(self._decision.candidates), self.max_candidates)] = 1
        return mask

    def close(self) -> None:
        self._close_world()
        if self._remote_client is not None:
            self._remote_client.close()
            self._remote_client = None

    def summary(self) -> dict[str, Any]:
        """The simulation's summary (the same dict as `hermes simulate --json`)."""
        if self._world is None:
            raise RuntimeError("no episode: call reset()")
        return self._world.summary()

    # ------------------------------------------------------------ internals

    def _close_world(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    def _next_decision(self) -> bool:
        """Advance until a decision is pending (False) or the simulation is over (True)."""
        while not self._queue:
            step = self._world.advance()
            self._take(step.ended)
            if step.reason == "decision_needed":
                self._queue = self._world.decisions()
                if not self._queue:  # e.g. a batch decision (scheduler.batching: external): not ours to answer
                    raise ValueError("the session waits for a decision that is not a routing decision; "
                                     "this environment answers routing decisions only")
            elif step.reason == "idle":
                self._decision, self._state = None, None
                return True
        self._decision = self._queue.pop(0)
        if len(self._decision.candidates) > self.max_candidates:
            raise ValueError(f"max_candidates: a {self._decision.stage_kind} decision has "
                             f"{len(self._decision.candidates)} candidates; raise max_candidates")
        self._state = self._world.state()  # fresh for every decision, also within one batch
        return False

    def _take(self, ended: list[Ended]) -> None:
        self._reward_acc += self.reward_cfg.of(ended)
        metric, w = self.reward_cfg.metric, self.latency_ema
        for e in ended:
            if e.dropped or not e.client_id:
                continue
            value = e.e2e_s if metric == "e2e" else e.ttft_s if metric == "ttft" else e.tpot_s
            old = self._recent.get(e.client_id)
            self._recent[e.client_id] = value if old is None else (1 - w) * old + w * value

    def _row(self, loads: list[ClientLoad], now_s: float) -> list[float]:
        if not loads:
            return [1.0] + [0.0] * (len(CANDIDATE_FEATURES) - 1)
        n = len(loads)
        recent = [self._recent[c.id] for c in loads if c.id in self._recent]
        return [
            1.0,
            math.log1p(sum(c.num_waiting for c in loads)),
            math.log1p(sum(c.num_running for c in loads)),
            sum(c.kv_usage for c in loads) / n,
            math.log1p(sum(c.waiting_prompt_tokens for c in loads)) / 10.0,
            10.0 * sum(c.est_step_s for c in loads) / n,
            min(sum(c.busy_s for c in loads) / n / now_s, 1.0) if now_s > 0 else 0.0,
            sum(recent) / len(recent) if recent else 0.0,
        ]

    def _observe(self, done: bool) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        d, st = self._decision, self._state
        if done or d is None or st is None:
            return obs
        by_id = {c.id: c for c in st.clients}
        now_s = st.time_ns / 1e9
        k = len(CANDIDATE_FEATURES)
        for i, cand in enumerate(d.candidates):
            if d.stage_kind == "route":  # a model: the load of the clients that serve it
                loads = [c for c in st.clients if c.model == cand and c.role in ("both", "prefill", "decode")]
            else:
                loads = [by_id[cand]] if cand in by_id else []
            obs[i * k:(i + 1) * k] = self._row(loads, now_s)
        base = self.max_candidates * k
        obs[base] = math.log1p(d.prompt_tokens) / 10.0
        obs[base + 1] = math.log1p(d.output_tokens) / 10.0
        obs[base + 2] = len(d.candidates) / self.max_candidates
        obs[base + 3 + STAGE_KINDS.index(d.stage_kind)] = 1.0
        return obs

    def _info(self, done: bool, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"action_mask": self.action_masks()}
        if self._decision is not None:
            info["stage_kind"] = self._decision.stage_kind
            info["candidates"] = list(self._decision.candidates)
        info.update(extra)
        return info
