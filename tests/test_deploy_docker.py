"""The Dockerfile's conventions, checked statically.

The image itself is built and run by scripts/container_test.sh (podman; CI runs it after
this suite from .ci/run): it proves the CMD serves, the HEALTHCHECK passes, the server runs
as uid 10001 and SIGTERM exits 0. These tests keep the cheap checks that need no engine.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import ROOT, hermes_argv, subprocess_env  # noqa: E402

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def cmd_argv() -> list[str]:
    return exec_form([a for i, a in stages()[-1] if i == "CMD"][-1])


def healthcheck() -> tuple[dict[str, str], list[str]]:
    args = [a for i, a in stages()[-1] if i == "HEALTHCHECK"][-1]
    opts = dict(re.findall(r"--([a-z-]+)=(\S+)", args.split("CMD", 1)[0]))
    return opts, exec_form(args.split("CMD", 1)[1].strip())


def arg_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def seconds(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60}[text[-1]]


def test_dockerfile_follows_the_conventions() -> None:
    ins = instructions()
    args = {i: a for i, a in ins if i == "ARG"}
    base = re.search(r"PYTHON_IMAGE=(\S+)", args["ARG"]).group(1)
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?", base), f"unpinned or non-slim base {base}"
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage build expected"
    build_runs = " ".join(a for st in all_stages[:-1] for i, a in st if i == "RUN")
    assert "scripts/gen_protos.py" in build_runs, "stubs must be generated during the build"
    runtime = all_stages[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runtime must run as a non-root user"
    exposed = {p for i, a in runtime if i == "EXPOSE" for p in a.split()}
    assert {"50051", "9400"} <= exposed
    argv = cmd_argv()
    assert argv[:2] == ["hermes", "serve"]
    assert arg_value(argv, "--port") == "50051" and arg_value(argv, "--metrics-port") == "9400"
    assert arg_value(argv, "--host") in ("0.0.0.0", "::", "[::]"), "must listen beyond the container's loopback"
    opts, check = healthcheck()
    assert check[:2] == ["hermes", "health"] and arg_value(check, "--target") == "127.0.0.1:50051"
    assert seconds(opts["timeout"]) >= float(arg_value(check, "--timeout"))


def test_copied_paths_exist_and_are_not_dockerignored() -> None:
    ignored = {line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for i, args in instructions():
        if i != "COPY" or "--from=" in args:
            continue
        sources = shlex.split(args)[:-1]
        for src in sources:
            matches = list(ROOT.glob(src.rstrip("/")))
            if src.endswith("*"):  # optional files (e.g. README.md*)
                continue
            assert matches, f"COPY source {src} does not exist"
            assert src.rstrip("/").split("/")[0] not in ignored, f"{src} is excluded by .dockerignore"


def test_container_check_is_valid_bash_and_runs_in_ci() -> None:
    scripts = [ROOT / "scripts" / "container_test.sh", ROOT / "scripts" / "install_test_deps.sh", ROOT / ".ci" / "run"]
    for script in scripts:
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{script.name}: {out.stderr}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci and "scripts/container_test.sh" in ci
    # the script builds this Dockerfile, overriding only the base image
    script = (ROOT / "scripts" / "container_test.sh").read_text()
    assert "--build-arg PYTHON_IMAGE=" in script and "-f Dockerfile" in script
    assert "ARG PYTHON_IMAGE" in DOCKERFILE.read_text()


@pytest.mark.parametrize("flag", ["--help"])
def test_healthcheck_command_is_in_the_cli(flag: str) -> None:
    out = subprocess.run(hermes_argv() + ["health", flag], cwd=ROOT, env=subprocess_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--target" in out.stdout
