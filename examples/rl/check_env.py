"""Run Gymnasium's env checker on every registered HERMES environment; print `ok` per env.

    python examples/rl/check_env.py                      # in-process environments
    python examples/rl/check_env.py --target HOST:PORT   # also against a running `hermes serve`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

import hermes_rl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", help="also check the remote environments against this server (host:port)")
    args = p.parse_args(argv)
    backends = [("local", {})] + ([("remote", {"backend": "remote", "target": args.target})] if args.target else [])
    for env_id in hermes_rl.ENV_IDS:
        for name, kwargs in backends:
            env = gym.make(env_id, **kwargs)
            try:
                check_env(env.unwrapped)
            finally:
                env.close()
            print(f"{env_id} [{name}]: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
