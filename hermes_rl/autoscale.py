"""``hermes/Autoscale-v0``: one step per control interval; add or drain clients of given kinds.

Every step the agent picks one action: nothing, add a client of kind k (it becomes
active after ``provision_delay_s``, and is paid for from the moment it is asked for),
or drain one active client of kind k (it finishes its work, takes no new work). The
simulation then runs to the next control point (a wake-up). The reward is the SLO
attainment of the requests that ended in the interval minus the cluster's cost rate
(see ``AutoscaleReward``). The cluster's router is a built-in policy of the spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np

from .backends import Ended, World, WorldState, open_world
from .specs import autoscale_kinds, autoscale_spec

NS = 1_000_000_000
OBS_HIGH = 1e9  # features are shares and log-counts: finite, far below this
CLUSTER_FEATURES = ("waiting", "running", "kv_usage", "in_flight", "attainment", "ended")


@dataclass(frozen=True)
class AutoscaleReward:
    """Reward = slo_weight x (share of ended requests meeting the SLOs) - cost_weight x cluster $/hour
    - invalid_action_penalty for a masked action. Dropped requests miss the SLO."""

    slo_ttft_s: float = 1.0
    slo_tpot_s: float | None = 0.1
    slo_weight: float = 1.0
    cost_weight: float = 0.05
    invalid_action_penalty: float = 0.1

    @classmethod
    def from_config(cls, cfg: AutoscaleReward | Mapping[str, Any] | None) -> AutoscaleReward:
        if cfg is None or isinstance(cfg, AutoscaleReward):
            return cfg or cls()
        known = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in known:
                raise ValueError(f"reward.{key}: unknown field; expected one of {', '.join(sorted(known))}")
        out = cls(**cfg)
        for key in ("slo_ttft_s", "slo_tpot_s", "slo_weight", "cost_weight", "invalid_action_penalty"):
            v = getattr(out, key)
            if v is None and key == "slo_tpot_s":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"reward.{key}: must be a finite number >= 0, got {v!r}")
        return out

    def meets(self, e: Ended) -> bool:
        return not e.dropped and e.ttft_s <= self.slo_ttft_s and (self.slo_tpot_s is None
                                                                  or e.tpot_s <= self.slo_tpot_s)


class AutoscaleEnv(gym.Env):
    """Scale a HERMES cluster out and in; in-process (``backend="local"``) or on a server."""

    metadata = {"render_modes": []}

    def __init__(self, spec: Mapping[str, Any] | None = None, kinds: Mapping[str, Mapping[str, Any]] | None = None,
                 initial: Mapping[str, int] | None = None, backend: str = "local", target: str | None = None,
                 token: str | None = None, interval_s: float = 2.0, provision_delay_s: float = 4.0,
                 reward: AutoscaleReward | Mapping[str, Any] | None = None, max_steps: int | None = None) -> None:
        if backend not in ("local", "remote"):
            raise ValueError(f"backend: unknown value {backend!r}; expected local or remote")
        if spec is not None and not isinstance(spec, Mapping):
            raise ValueError("spec: must be a spec mapping (its clients are replaced by the initial kinds)")
        self.spec_doc = dict(spec if spec is not None else autoscale_spec())
        self.kinds = {k: dict(v) for k, v in (kinds if kinds is not None else autoscale_kinds()).items()}
        if not self.kinds:
            raise ValueError("kinds: give at least one client kind")
        for name, kind in self.kinds.items():
            if not isinstance(kind.get("client"), Mapping):
                raise ValueError(f"kinds.{name}.client: missing (the client's spec, as in a spec's clients list)")
            for key in ("cost_per_hour", "max"):
                if not isinstance(kind.get(key), (int, float)) or kind[key] < 0:
                    raise ValueError(f"kinds.{name}.{key}: must be a number >= 0, got {kind.get(key)!r}")
        self.kind_names = list(self.kinds)
        self.initial = dict(initial if initial is not None else {self.kind_names[0]: 1})
        for name, n in self.initial.items():
            if name not in self.kinds:
                raise ValueError(f"initial.{name}: no such kind; kinds: {', '.join(self.kind_names)}")
            if not isinstance(n, int) or not 0 <= n <= self.kinds[name]["max"]:
                raise ValueError(f"initial.{name}: must be an integer in 0..{self.kinds[name]['max']}, got {n!r}")
        if sum(self.initial.values()) < 1:
            raise ValueError("initial: the cluster needs at least one client at the start")
        if not interval_s > 0:
            raise ValueError(f"interval_s: must be > 0, got {interval_s}")
        if not provision_delay_s >= 0:
            raise ValueError(f"provision_delay_s: must be >= 0, got {provision_delay_s}")
        self.backend, self.target, self.token = backend, target, token
        self.interval_ns = round(interval_s * NS)
        self.delay_ns = round(provision_delay_s * NS)
        self.reward_cfg = AutoscaleReward.from_config(reward)
        self.max_steps = max_steps
        self.num_requests = (self.spec_doc.get("workload") or {}).get("num_requests")
        k = len(self.kind_names)
        self.action_space = gym.spaces.Discrete(1 + 2 * k)
        self.observation_space = gym.spaces.Box(0.0, OBS_HIGH, shape=(3 * k + len(CLUSTER_FEATURES),),
                                                dtype=np.float32)
        self._world: World | None = None
        self._remote_client: Any = None
        self._kind_of: dict[str, str] = {}
        self._next_id: dict[str, int] = {}
        self._state: WorldState | None = None
        self._steps = 0
        self._last_ended: list[Ended] = []

    # ------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._close_world()
        sim_seed = int(self.np_random.integers(0, 2**31 - 1))
        self._kind_of, self._next_id = {}, {k: 0 for k in self.kind_names}
        clients = []
        for name in self.kind_names:
            for _ in range(self.initial.get(name, 0)):
                cid = self._new_id(name)
                clients.append({**self.kinds[name]["client"], "id": cid})
        doc = {**self.spec_doc, "clients": clients}
        self._world, self._remote_client = open_world(self.backend, doc, sim_seed, None, self.target, self.token,
                                                      self._remote_client)
        self._steps, self._last_ended = 0, []
        self._state = self._world.state()
        return self._observe(), self._info(sim_seed=sim_seed)

    def step(self, action: Any):
        if self._state is None:
            raise RuntimeError("step() after the episode ended: call reset()")
        a = int(action)
        mask = self.action_masks()
        reward = 0.0
        invalid = not (0 <= a < mask.size and mask[a])
        if invalid:
            reward -= self.reward_cfg.invalid_action_penalty
            a = 0
        now = self._state.time_ns
        self._apply(a, now)
        self._world.add_wakeup(now + self.interval_ns, "autoscale")
        ended: list[Ended] = []
        while True:
            step = self._world.advance()
            ended += step.ended
            if step.reason in ("wakeup", "idle"):
                break
        self._state = self._world.state()
        self._last_ended = ended
        self._steps += 1
        met = sum(self.reward_cfg.meets(e) for e in ended)
        attainment = self._attainment(ended, met)
        reward += self.reward_cfg.slo_weight * attainment - self.reward_cfg.cost_weight * self.cost_per_hour()
        st = self._state
        terminated = self.num_requests is not None and st.in_flight == 0 and st.injected >= self.num_requests
        truncated = not terminated and self.max_steps is not None and self._steps >= self.max_steps
        info = self._info(attainment=attainment, ended=len(ended), slo_met=met, invalid_action=invalid)
        return self._observe(), float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Valid actions now: 0 = nothing, 1+k = add kind k, 1+K+k = drain kind k."""
        k = len(self.kind_names)
        mask = np.zeros(1 + 2 * k, dtype=np.int8)
        mask[0] = 1
        if self._state is None:
            return mask
        counts = self._counts()
        active_total = sum(c[0] for c in counts.values())
        for i, name in enumerate(self.kind_names):
            active, pending, busy_draining = counts[name]
            mask[1 + i] = active + pending < self.kinds[name]["max"]
            mask[1 + k + i] = active >= 1 and active_total >= 2
        return mask

    def cost_per_hour(self) -> float:
        """What the cluster costs now: active and provisioning clients, and draining ones still working."""
        total = 0.0
        for c in self._state.clients if self._state else ():
            kind = self._kind_of.get(c.id)
            if kind is not None and self._billed(c):
                total += self.kinds[kind]["cost_per_hour"]
        return total

    def close(self) -> None:
        self._close_world()
        if self._remote_client is not None:
            self._remote_client.close()
            self._remote_client = None

    def summary(self) -> dict[str, Any]:
        if self._world is None:
            raise RuntimeError("no episode: call reset()")
        return self._world.summary()

    # ------------------------------------------------------------ internals

    def _new_id(self, kind: str) -> str:
        cid = f"{kind}-{self._next_id[kind]}"
        self._next_id[kind] += 1
        self._kind_of[cid] = kind
        return cid

    @staticmethod
    def _billed(c: Any) -> bool:
        return c.status in ("active", "pending") or (c.status in ("draining", "removed")
                                                    and c.num_waiting + c.num_running > 0)

    def _counts(self) -> dict[str, tuple[int, int, int]]:
        counts = {k: [0, 0, 0] for k in self.kind_names}
        for c in self._state.clients:
            kind = self._kind_of.get(c.id)
            if kind is None:
                continue
            slot = {"active": 0, "pending": 1}.get(c.status, 2)
            if slot < 2 or self._billed(c):
                counts[kind][slot] += 1
        return {k: tuple(v) for k, v in counts.items()}

    def _apply(self, a: int, now: int) -> None:
        k = len(self.kind_names)
        if a == 0:
            return
        if a <= k:
            name = self.kind_names[a - 1]
            cid = self._new_id(name)
            self._world.change_cluster(now + self.delay_ns, "add", cid, self.kinds[name]["client"])
            return
        name = self.kind_names[a - 1 - k]
        victim = max((c.id for c in self._state.clients if self._kind_of.get(c.id) == name
                      and c.status == "active"), key=lambda cid: int(cid.rsplit("-", 1)[1]))
        self._world.change_cluster(now, "drain", victim)

    def _attainment(self, ended: list[Ended], met: int) -> float:
        if ended:
            return met / len(ended)
        return 1.0 if self._state.in_flight == 0 else 0.0

    def _close_world(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None
        self._state = None

    def _observe(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        if self._state is None:
            return obs
        counts = self._counts()
        for i, name in enumerate(self.kind_names):
            cap = max(self.kinds[name]["max"], 1)
            obs[3 * i:3 * i + 3] = [n / cap for n in counts[name]]
        st = self._state
        active = [c for c in st.clients if c.status == "active"]
        base = 3 * len(self.kind_names)
        ended = self._last_ended
        met = sum(self.reward_cfg.meets(e) for e in ended)
        obs[base:] = [
            math.log1p(sum(c.num_waiting for c in st.clients)),
            math.log1p(sum(c.num_running for c in st.clients)),
            sum(c.kv_usage for c in active) / len(active) if active else 0.0,
            math.log1p(st.in_flight),
            self._attainment(ended, met) if self._steps else 1.0,
            math.log1p(len(ended)),
        ]
        return obs

    def _info(self, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"action_mask": self.action_masks(), "cost_per_hour": self.cost_per_hour()}
        if self._state is not None:
            info["time_s"] = self._state.time_ns / NS
        info.update(extra)
        return info
