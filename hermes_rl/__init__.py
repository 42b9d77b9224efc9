"""Gymnasium environments over the HERMES simulator (``pip install .[rl]``).

Importing this package registers:

* ``hermes/Routing-v0``: one step per routing decision (action: a candidate index);
* ``hermes/Autoscale-v0``: one step per control interval (add or drain clients).

Both take ``backend="local"`` (the engine in this process) or ``backend="remote",
target="host:port"`` (a session on a HERMES server, through client_sdk)::

    import gymnasium as gym, hermes_rl
    env = gym.make("hermes/Routing-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(int(info["action_mask"].argmax()))
"""

from __future__ import annotations

import gymnasium as gym

from .autoscale import AutoscaleEnv, AutoscaleReward
from .routing import RoutingEnv, RoutingReward

ENV_IDS = ("hermes/Routing-v0", "hermes/Autoscale-v0")

for _id, _entry in zip(ENV_IDS, ("hermes_rl.routing:RoutingEnv", "hermes_rl.autoscale:AutoscaleEnv"), strict=True):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, disable_env_checker=False)

__all__ = ["ENV_IDS", "AutoscaleEnv", "AutoscaleReward", "RoutingEnv", "RoutingReward"]
