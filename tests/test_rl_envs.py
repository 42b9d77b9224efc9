"""The Gymnasium environments: registered, checker-clean, seeded, identical in-process and remote,
masked, vectorisable, and a numpy router trained on one learns to beat random routing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from server_fixtures import ROOT, ServerProcess, env_with_root

gym = pytest.importorskip("gymnasium", reason="the [rl] extra (gymnasium) is not installed")
hermes_rl = pytest.importorskip("hermes_rl")

MULTISTAGE = str(ROOT / "examples" / "specs" / "multistage-hetero.yaml")


def small_routing(n: int = 30) -> dict:
    spec = hermes_rl.routing.routing_spec()
    spec["workload"]["num_requests"] = n
    return spec


def play(env, seed: int, rule=lambda n, mask: int(np.flatnonzero(mask)[n % int(mask.sum())])):
    """Observations, rewards and infos of one whole episode under a fixed action rule."""
    obs, info = env.reset(seed=seed)
    trace, n, done = [(obs, 0.0, info["action_mask"])], 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(rule(n, info["action_mask"]))
        trace.append((obs, reward, info["action_mask"]))
        n += 1
        done = terminated or truncated
    return trace


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[0], y[0]) and x[1] == y[1] and np.array_equal(x[2], y[2])
                                    for x, y in zip(a, b, strict=True))


def test_both_envs_are_registered() -> None:
    assert set(hermes_rl.ENV_IDS) == {"hermes/Routing-v0", "hermes/Autoscale-v0"}
    for env_id in hermes_rl.ENV_IDS:
        assert env_id in gym.registry


@pytest.mark.slow
def test_check_env_script_passes_every_env_in_process_and_remote(hermes_server: ServerProcess) -> None:
    proc = subprocess.run([sys.executable, "examples/rl/check_env.py", "--target", hermes_server.address],
                          cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for env_id in hermes_rl.ENV_IDS:
        for backend in ("local", "remote"):
            assert f"{env_id} [{backend}]: ok" in lines


def test_seeded_episodes_repeat_and_seeds_differ() -> None:
    env = gym.make("hermes/Routing-v0", spec=small_routing())
    a, b, c = play(env, 5), play(env, 5), play(env, 6)
    assert same(a, b)
    assert not same(a, c)
    env.close()


def test_mask_marks_the_candidates_and_a_masked_action_is_penalised() -> None:
    env = gym.make("hermes/Routing-v0", spec=small_routing(), reward={"invalid_action_penalty": 1000.0})
    obs, info = env.reset(seed=1)
    assert np.array_equal(info["action_mask"], env.unwrapped.action_masks())
    assert info["action_mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0] and len(info["candidates"]) == 3
    _, reward, _, _, step_info = env.step(7)  # slot 7 is masked: falls back to a valid client, penalised
    assert step_info["invalid_action"] and step_info["chosen"] in info["candidates"]
    assert reward <= -1000.0
    _, reward, _, _, step_info = env.step(0)
    assert not step_info["invalid_action"] and reward > -1000.0
    env.close()


def test_every_stage_kind_is_a_decision_and_route_stages_offer_models() -> None:
    env = gym.make("hermes/Routing-v0", spec=MULTISTAGE, overrides={"workload.num_requests": 4})
    obs, info = env.reset(seed=0)
    kinds, done = set(), False
    while not done:
        kinds.add(info["stage_kind"])
        if info["stage_kind"] == "route":
            assert set(info["candidates"]) == {"Llama-3.1-8B", "Llama-3.1-70B"}
        kind_slot = env.unwrapped.max_candidates * len(hermes_rl.routing.CANDIDATE_FEATURES) + 3
        assert obs[kind_slot:].argmax() == hermes_rl.backends.STAGE_KINDS.index(info["stage_kind"])
        obs, _, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    assert {"embed", "search", "rerank", "route", "prefill", "decode", "generic"} <= kinds
    assert env.unwrapped.summary()["requests"]["completed"] == 4
    env.close()


def test_reward_is_minus_latency_of_ended_requests() -> None:
    env = gym.make("hermes/Routing-v0", spec=small_routing(), reward={"metric": "e2e", "slo_s": 2.0,
                                                                     "slo_penalty": 5.0})
    total = sum(r for _, r, _ in play(env, 2))
    s = env.unwrapped.summary()
    e2e_sum = s["latency_s"]["e2e"]["mean"] * s["requests"]["completed"]
    assert total < -e2e_sum + 1e-6  # latency plus SLO penalties (the first decision comes after no ending)
    assert total == pytest.approx(-e2e_sum - 5.0 * round((-total - e2e_sum) / 5.0), abs=1e-6)
    env.close()


@pytest.mark.parametrize("bad, field", [({"metric": "p99"}, "reward.metric"), ({"slo": 1}, "reward.slo"),
                                        ({"slo_s": -1.0}, "reward.slo_s")])
def test_bad_reward_config_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        hermes_rl.RoutingEnv(reward=bad)


def test_bad_autoscale_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"kinds\.big\.cost_per_hour"):
        hermes_rl.AutoscaleEnv(kinds={"big": {"client": {"hardware": "H100-SXM", "model": "Llama-3.1-8B"},
                                              "max": 2}})
    with pytest.raises(ValueError, match=r"initial\.tiny"):
        hermes_rl.AutoscaleEnv(initial={"tiny": 1})


def test_autoscale_adds_after_the_delay_and_drains() -> None:
    env = gym.make("hermes/Autoscale-v0", interval_s=1.0, provision_delay_s=2.0)
    u = env.unwrapped
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [1, 1, 1, 0, 0]  # nothing to drain below one client
    _, _, _, _, info = env.step(2)  # add an L40S: billed now, active after 2 s
    assert info["cost_per_hour"] == pytest.approx(4.0 + 1.2)
    statuses = {c.id: c.status for c in u._state.clients}
    assert statuses["l40s-0"] == "pending"
    env.step(0)
    env.step(0)
    assert {c.id: c.status for c in u._state.clients}["l40s-0"] == "active"
    mask = u.action_masks()
    assert mask[3] == 1 and mask[4] == 1  # either kind can now be drained
    _, _, _, _, info = env.step(4)  # drain the L40S
    assert {c.id: c.status for c in u._state.clients}["l40s-0"] == "draining"
    env.close()


def test_vector_envs_step_in_lockstep() -> None:
    venv = gym.make_vec("hermes/Routing-v0", num_envs=2, vectorization_mode="sync", spec=small_routing())
    obs, info = venv.reset(seed=[3, 3])
    assert obs.shape == (2, venv.single_observation_space.shape[0]) and np.array_equal(obs[0], obs[1])
    for _ in range(10):
        obs, reward, _, _, info = venv.step(np.array([0, 0]))
        assert np.array_equal(obs[0], obs[1]) and reward[0] == reward[1]
    assert info["action_mask"].shape == (2, 8)
    venv.close()
    avec = gym.make_vec("hermes/Autoscale-v0", num_envs=2, vectorization_mode="async")
    obs, _ = avec.reset(seed=0)
    obs, reward, *_ = avec.step(np.array([1, 0]))
    assert obs.shape[0] == 2 and np.isfinite(reward).all()
    avec.close()


@pytest.mark.slow
def test_in_process_and_remote_episodes_are_identical(hermes_server: ServerProcess) -> None:
    local = gym.make("hermes/Routing-v0", spec=small_routing(40))
    remote = gym.make("hermes/Routing-v0", spec=small_routing(40), backend="remote", target=hermes_server.address)
    rule = lambda n, mask: int(np.flatnonzero(mask)[(n * 7) % int(mask.sum())])  # noqa: E731
    assert same(play(local, 9, rule), play(remote, 9, rule))
    local.close()
    remote.close()
    local = gym.make("hermes/Autoscale-v0", max_steps=8)
    remote = gym.make("hermes/Autoscale-v0", max_steps=8, backend="remote", target=hermes_server.address)
    rule = lambda n, mask: int(np.flatnonzero(mask)[(n * 3) % int(mask.sum())])  # noqa: E731
    assert same(play(local, 4, rule), play(remote, 4, rule))
    local.close()
    remote.close()


@pytest.mark.slow
def test_train_router_beats_random_routing_on_held_out_seeds() -> None:
    spec = importlib.util.spec_from_file_location("train_router", ROOT / "examples" / "rl" / "train_router.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    weights, history = mod.train(iterations=4, population=8, elite=3, seeds_per_eval=1, seed=0)
    assert len(history) == 4
    held_out = [10_000, 10_001, 10_002]
    assert mod.evaluate(weights, held_out) > mod.evaluate(None, held_out)
