"""The `hermes` command line: one sub-command per module, each with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules; each exposes register(subparsers) which adds its parser
# and sets `func` (taking the parsed args, returning an exit code).
COMMAND_MODULES = [
    "server.cli.simulate",
    "server.cli.presets",
    "server.cli.serve",
    "server.cli.demo",
    "server.cli.health",
    "server.cli.sweep",
    "server.cli.capacity",
    "server.cli.fleet",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hermes",
        description="HERMES: simulate multi-stage LLM inference on heterogeneous clusters, "
        "offline or as a gRPC co-simulation server.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
