"""Learn a router for a heterogeneous cluster with numpy only, and show it beats random routing.

The policy scores every candidate with a linear function of its load row (waiting,
running, KV use, step time, utilisation, recent latency) plus a learned bias per
candidate slot (a table: which GPU it is), and routes to the best valid one. The
weights are found by the cross-entropy method: sample weight vectors, run an episode
of ``hermes/Routing-v0`` with each, keep the best, refit, repeat. Fitness is the
episode's return (minus the summed end-to-end latency of its requests).

    python examples/rl/train_router.py --plot reward.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import hermes_rl  # noqa: E402, F401  (registers the environments)
from hermes_rl.routing import CANDIDATE_FEATURES  # noqa: E402

ENV_ID = "hermes/Routing-v0"


class LinearRouter:
    """score(candidate) = w . load_row + bias[slot]; route to the highest-scoring valid candidate."""

    def __init__(self, weights: np.ndarray, max_candidates: int) -> None:
        self.k = len(CANDIDATE_FEATURES)
        self.m = max_candidates
        self.w = weights[:self.k]
        self.bias = weights[self.k:self.k + max_candidates]

    @staticmethod
    def size(max_candidates: int) -> int:
        return len(CANDIDATE_FEATURES) + max_candidates

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        rows = obs[:self.m * self.k].reshape(self.m, self.k)
        scores = rows @ self.w + self.bias
        scores[mask == 0] = -np.inf
        return int(np.argmax(scores))


def episode_return(env: gym.Env, policy, seed: int, rng: np.random.Generator | None = None) -> float:
    """Run one episode; ``policy`` None routes uniformly at random over the valid candidates."""
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        mask = info["action_mask"]
        action = int(rng.choice(np.flatnonzero(mask))) if policy is None else policy.act(obs, mask)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
    return total


def train(iterations: int = 10, population: int = 16, elite: int = 4, seeds_per_eval: int = 2,
          seed: int = 0, env_kwargs: dict | None = None) -> tuple[np.ndarray, list[dict]]:
    """Cross-entropy method over the router's weights. Returns the mean weights and per-iteration returns."""
    env = gym.make(ENV_ID, **(env_kwargs or {}))
    m = env.unwrapped.max_candidates
    rng = np.random.default_rng(seed)
    mean, std = np.zeros(LinearRouter.size(m)), np.ones(LinearRouter.size(m))
    history = []
    for it in range(iterations):
        train_seeds = rng.integers(0, 10_000, size=seeds_per_eval)  # training seeds: 0..9999
        samples = mean + std * rng.standard_normal((population, mean.size))
        returns = np.array([np.mean([episode_return(env, LinearRouter(w, m), int(s)) for s in train_seeds])
                            for w in samples])
        best = samples[np.argsort(returns)[-elite:]]
        mean, std = best.mean(axis=0), best.std(axis=0) + 0.05
        history.append({"iteration": it, "mean_return": float(returns.mean()), "best_return": float(returns.max())})
        print(f"iteration {it}: mean episode return {returns.mean():9.1f}  best {returns.max():9.1f}", flush=True)
    env.close()
    return mean, history


def evaluate(weights: np.ndarray | None, seeds: list[int], env_kwargs: dict | None = None) -> float:
    """Mean episode return on ``seeds`` of the learned router (or of random routing when weights is None)."""
    env = gym.make(ENV_ID, **(env_kwargs or {}))
    policy = None if weights is None else LinearRouter(weights, env.unwrapped.max_candidates)
    rng = np.random.default_rng(12345)
    out = float(np.mean([episode_return(env, policy, s, rng) for s in seeds]))
    env.close()
    return out


def plot(history: list[dict], random_return: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [h["mean_return"] for h in history], marker="o", label="population mean")
    ax.plot(its, [h["best_return"] for h in history], marker=".", label="best")
    ax.axhline(random_return, color="grey", linestyle="--", label="random routing")
    ax.set_xlabel("CEM iteration")
    ax.set_ylabel("reward per episode (- summed e2e latency, s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seeds", type=int, default=5, help="held-out seeds (10000, 10001, ...)")
    p.add_argument("--plot", metavar="OUT.png", help="plot reward per episode (needs matplotlib)")
    p.add_argument("--json", metavar="OUT", help="write weights, history and evaluation here")
    args = p.parse_args(argv)
    weights, history = train(args.iterations, args.population, seed=args.seed)
    held_out = list(range(10_000, 10_000 + args.eval_seeds))  # never drawn for training
    learned, random_ = evaluate(weights, held_out), evaluate(None, held_out)
    print(f"held-out seeds: learned router {learned:.1f}, random routing {random_:.1f} (episode return)")
    if args.plot:
        plot(history, random_, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": weights.tolist(), "history": history,
                                               "learned": learned, "random": random_}, indent=2))
    return 0 if learned > random_ else 1


if __name__ == "__main__":
    sys.exit(main())
