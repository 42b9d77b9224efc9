"""The Dockerfile: conventions, and its CMD and HEALTHCHECK run as the container would run them.

No Docker engine runs here, so the image is not built; the commands the image
would run are executed against a real process instead (the ports the container
publishes are remapped to free loopback ports).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import (  # noqa: E402
    ROOT,
    free_port,
    hermes_argv,
    start_process,
    stop_process,
    subprocess_env,
    wait_for_line,
)

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


def test_dockerfile_cmd_and_healthcheck_run_as_in_the_container() -> None:
    grpc_port, metrics_port = free_port(), free_port()
    remap = {"50051": str(grpc_port), "9400": str(metrics_port)}

    def localize(argv: list[str]) -> list[str]:
        """`hermes` -> this checkout's CLI; the container's ports -> free loopback ports."""
        out = []
        for a in argv[1:]:
            for cport, lport in remap.items():
                a = re.sub(rf"(^|:){cport}$", rf"\g<1>{lport}", a)
            out.append(a)
        return hermes_argv() + out

    opts, check = healthcheck()
    check_timeout = seconds(opts["timeout"])

    def run_check() -> tuple[int, float]:
        t0 = time.monotonic()
        rc = subprocess.run(localize(check), cwd=ROOT, env=subprocess_env(), capture_output=True,
                            timeout=check_timeout + 30).returncode
        return rc, time.monotonic() - t0

    assert run_check()[0] == 1, "HEALTHCHECK must fail while nothing serves"
    proc = start_process(localize(cmd_argv()))
    lines: list[str] = []
    try:
        wait_for_line(proc, r"listening on", 60, lines)
        rc, took = run_check()
        assert rc == 0, "HEALTHCHECK must pass once the server is up"
        assert took < check_timeout + 5, f"HEALTHCHECK took {took:.1f}s (timeout {check_timeout}s)"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            assert b"hermes_sessions_open" in resp.read()
        # exec-form CMD: SIGTERM reaches the server itself, which drains and exits 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0
        assert run_check()[0] == 1
    finally:
        stop_process(proc)


@pytest.mark.parametrize("flag", ["--help"])
def test_healthcheck_command_is_in_the_cli(flag: str) -> None:
    out = subprocess.run(hermes_argv() + ["health", flag], cwd=ROOT, env=subprocess_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--target" in out.stdout
