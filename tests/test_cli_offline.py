"""`hermes simulate` against bad input: every case exits with its documented code (2 for bad
input, 3 for a run that completed nothing), says why in one line naming the option or the
spec field, prints no traceback, and returns in bounded time. Outputs and optional
dependencies are checked before the run (the simulation is never built).

Most cases run in-process (fast tier); those that could hang, recurse deeply or need a
clean interpreter (matplotlib blocked) run `python -m server.cli` in a subprocess (slow).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server import cli
from server.cli import simulate as sim_cli

ROOT = Path(__file__).resolve().parent.parent
# the engine's YAML limits and range checks (sim_engine/safe_yaml.py): without them a YAML
# bomb hangs the loader, and some errors do not name their field yet
ENGINE_LIMITS = importlib.util.find_spec("sim_engine.safe_yaml") is not None
NEEDS_LIMITS = pytest.mark.skipif(not ENGINE_LIMITS, reason="needs the engine's YAML limits (sim_engine.safe_yaml)")
TIME_BOUND_S = 60.0  # loose: a bad input is refused in well under a second of work

GOOD = """\
name: cli-test
seed: 1
clients:
  - {id: h100, hardware: H100-SXM, model: Llama-3.1-8B}
router: round_robin
workload:
  arrival: {process: poisson, rate: 20.0}
  prompt_tokens: {dist: fixed, value: 100}
  output_tokens: {dist: fixed, value: 10}
  num_requests: 20
"""
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


def spec_with(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@dataclass
class Case:
    id: str
    args: list[str]  # "{spec}" is the spec file written from `spec`, "{tmp}" the test's folder
    spec: str | bytes | None = GOOD
    code: int = 2
    says: tuple[str, ...] = ()  # the message contains each (case-insensitive)
    says_with_limits: tuple[str, ...] = ()  # ... and these once the engine's limits are in
    subprocess: bool = False
    marks: list = field(default_factory=list)
    may_build: bool = False  # the Simulation may be built (it runs, or it checks the field)


CASES = [
    # -- the spec file
    Case("missing-file", ["{tmp}/nope.yaml"], spec=None, says=("spec", "no such file")),
    Case("folder-as-spec", ["{tmp}"], spec=None, says=("spec", "folder")),
    Case("bad-yaml", ["{spec}"], spec="name: [unclosed\n", says=("spec", "yaml")),
    Case("not-a-mapping", ["{spec}"], spec="- a\n- b\n", says=("spec", "mapping")),
    Case("empty-file", ["{spec}"], spec="", says=("spec", "mapping")),
    Case("not-utf8", ["{spec}"], spec=b"\xff\xfe\x00garbage", says=("spec",), says_with_limits=("utf-8",)),
    Case("yaml-bomb", ["{spec}"], spec=BOMB, says=("spec",), subprocess=True, marks=[NEEDS_LIMITS]),
    Case("deep-nesting", ["{spec}"], spec="[" * 50_000 + "]" * 50_000, says=("spec",), subprocess=True),
    Case("python-tag", ["{spec}"], spec=GOOD + 'x: !!python/object/apply:os.system ["echo pwned"]\n',
         says=("spec",)),
    Case("binary-tag", ["{spec}"], spec=GOOD + "description: !!binary aGVsbG8=\n", says=("spec",),
         says_with_limits=("description",)),
    Case("date-value", ["{spec}"], spec=GOOD + "description: 2024-01-01\n", says=("spec",),
         says_with_limits=("description",)),
    Case("set-tag", ["{spec}"], spec=GOOD + "description: !!set {a, b}\n", says=("spec",),
         says_with_limits=("description",)),
    # -- fields
    Case("unknown-field", ["{spec}"], spec=GOOD + "bogus_field: 1\n", says=("bogus_field", "unknown")),
    Case("negative-rate", ["{spec}"], spec=spec_with("rate: 20.0", "rate: -1"), says=("workload.arrival.rate",)),
    Case("infinite-rate", ["{spec}"], spec=spec_with("rate: 20.0", "rate: .inf"), says=("workload.arrival.rate",)),
    Case("nan-integer", ["{spec}"], spec=spec_with("num_requests: 20", "num_requests: .nan"), says=("spec",),
         says_with_limits=("workload.num_requests",)),
    Case("huge-integer", ["{spec}"], spec=spec_with("num_requests: 20", "num_requests: 1e300"),
         says=("workload.num_requests",)),
    Case("tp-not-dividing-heads", ["{spec}"], spec=spec_with("model: Llama-3.1-8B}", "model: Llama-3.1-8B, tp: 3}"),
         says=("clients[0].tp",), may_build=not ENGINE_LIMITS),  # load_spec checks tp with the one validator
    Case("huge-block-size", ["{spec}"], spec=spec_with("model: Llama-3.1-8B}",
                                                      "model: Llama-3.1-8B, scheduler: {block_size: 1000000000}}"),
         says=("block_size",), subprocess=True, marks=[NEEDS_LIMITS]),
    Case("million-replicas", ["{spec}"], spec=spec_with("model: Llama-3.1-8B}", "model: Llama-3.1-8B, replicas: 1000000}"),
         says=("replicas",), subprocess=True, marks=[NEEDS_LIMITS]),
    # -- options
    Case("set-without-equals", ["{spec}", "--set", "workload.arrival.rate"], says=("--set", "key=value")),
    Case("set-unknown-field", ["{spec}", "--set", "workload.bogus=1"], says=("workload.bogus", "unknown")),
    Case("set-bad-yaml-value", ["{spec}", "--set", "workload.arrival.rate=["], says=("--set workload.arrival.rate",)),
    Case("seed-not-a-number", ["{spec}", "--seed", "abc"], says=("--seed",)),
    Case("negative-seed", ["{spec}", "--seed", "-1"], says=("seed",)),
    Case("memory-limit-not-positive", ["{spec}", "--max-memory-gb", "0"], says=("--max-memory-gb",)),
    Case("data-dir-missing", ["{spec}", "--data-dir", "{tmp}/none"], says=("--data-dir",)),
    # -- outputs, checked before the run
    Case("json-missing-folder", ["{spec}", "--json", "{tmp}/no/such/out.json"], says=("--json", "does not exist")),
    Case("csv-missing-folder", ["{spec}", "--requests-csv", "{tmp}/none/r.csv"], says=("--requests-csv",)),
    Case("trace-into-a-folder", ["{spec}", "--trace", "{tmp}"], says=("--trace", "folder")),
    Case("json-and-trace-same-file", ["{spec}", "--json", "{tmp}/o", "--trace", "{tmp}/o"], says=("--trace", "--json")),
    Case("json-over-the-spec", ["{spec}", "--json", "{spec}"], says=("--json", "spec")),
    Case("plot-unknown-format", ["{spec}", "--plot", "{tmp}/p.xyz"], says=("--plot", ".png")),
    Case("plot-without-matplotlib", ["{spec}", "--plot", "{tmp}/p.png"], says=("--plot", "matplotlib"),
         subprocess=True),
    # -- runs that complete nothing
    Case("all-dropped", ["{spec}"], spec=spec_with("model: Llama-3.1-8B}",
                                                  "model: Llama-3.1-8B, scheduler: {max_model_len: 64}}"),
         code=3, says=("every request was dropped", "exceeds_max_model_len"), may_build=True),
    Case("nothing-arrives", ["{spec}"], spec=spec_with("arrival: {process: poisson, rate: 20.0}",
                                                      "arrival: {process: none}"),
         code=3, says=("no request arrived",), may_build=True),
]


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float


def materialise(case: Case, tmp: Path) -> list[str]:
    spec_path = tmp / "spec.yaml"
    if isinstance(case.spec, bytes):
        spec_path.write_bytes(case.spec)
    elif case.spec is not None:
        spec_path.write_text(case.spec)
    return ["simulate", "-q"] + [a.format(spec=spec_path, tmp=tmp) for a in case.args]


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Result:
    t0 = time.monotonic()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return Result(code, out, err, time.monotonic() - t0)


def run_subprocess(argv: list[str], block_matplotlib: bool = False) -> Result:
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    prelude = "import sys; sys.modules['matplotlib'] = None; " if block_matplotlib else "import sys; "
    code = prelude + f"from server.cli import main; sys.exit(main({argv!r}))"
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIME_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`hermes {' '.join(argv)}` did not finish in {TIME_BOUND_S} s")
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


def check(case: Case, r: Result) -> None:
    assert "Traceback" not in r.err + r.out
    assert r.code == case.code, (r.code, r.err)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    message = lines[0].lower()
    assert message.startswith("hermes simulate: ")
    for word in case.says + (case.says_with_limits if ENGINE_LIMITS else ()):
        assert word.lower() in message, (word, message)
    assert r.seconds < TIME_BOUND_S
    if case.code == 3:  # no latency table of zeros
        assert "TTFT" not in r.out


def params(subprocess_cases: bool) -> list:
    marks = [pytest.mark.slow] if subprocess_cases else []
    return [pytest.param(c, id=c.id, marks=c.marks + marks) for c in CASES if c.subprocess == subprocess_cases]


@pytest.mark.parametrize("case", params(subprocess_cases=False))
def test_bad_input_in_process(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not case.may_build:  # refused before any simulation is built
        def no_simulation(*a: object, **k: object) -> None:
            raise AssertionError("the simulation was built although the input is bad")

        monkeypatch.setattr(sim_cli, "Simulation", no_simulation)
    check(case, run_in_process(materialise(case, tmp_path), capsys))


@pytest.mark.parametrize("case", params(subprocess_cases=True))
def test_bad_input_in_a_subprocess(case: Case, tmp_path: Path) -> None:
    r = run_subprocess(materialise(case, tmp_path), block_matplotlib=case.id == "plot-without-matplotlib")
    check(case, r)
    assert "simulation '" not in r.out  # nothing ran


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["json-missing-folder", "unknown-field", "all-dropped"])
def test_the_real_entry_point_agrees(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    check(case, run_subprocess(materialise(case, tmp_path)))


def test_corpus_size() -> None:
    assert len(CASES) >= 20


def test_a_good_run_still_prints_its_table_and_writes_outputs(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    r = run_in_process(["simulate", str(spec), "--json", str(tmp_path / "s.json"),
                        "--requests-csv", str(tmp_path / "r.csv")], capsys)
    assert r.code == 0, r.err
    assert "TTFT" in r.out and "Traceback" not in r.err
    assert (tmp_path / "s.json").stat().st_size > 0 and (tmp_path / "r.csv").stat().st_size > 0


def test_outputs_of_a_run_that_completed_nothing_are_still_written(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    case = next(c for c in CASES if c.id == "all-dropped")
    argv = materialise(case, tmp_path) + ["--json", str(tmp_path / "s.json")]
    r = run_in_process(argv, capsys)
    assert r.code == 3
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["requests"]["completed"] == 0 and summary["requests"]["dropped"] == 20


def test_help_explains_outputs_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("--json", "--requests-csv", "--trace", "--plot", "matplotlib", "exit codes", "3 ",
                 "checked before the run", "hermes presets"):
        assert word in text, word


def test_a_spec_estimated_past_the_memory_limit_is_refused_naming_its_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_cli, "Simulation", lambda *a, **k: pytest.fail("built past the memory limit"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("num_requests: 20", "num_requests: 5000000"))
    case = Case("memory", [], code=2, says=("workload.num_requests", "gib", "--max-memory-gb"))
    check(case, run_in_process(["simulate", "-q", str(spec), "--max-memory-gb", "2"], capsys))


def test_demo_checks_its_json_path_before_starting_a_server(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    r = run_in_process(["demo", "--json", str(tmp_path / "no" / "s.json")], capsys)
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip().splitlines() == [f"hermes demo: --json: folder '{tmp_path / 'no'}' does not exist"]


@pytest.mark.slow
def test_a_good_run_writes_its_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    r = run_in_process(["simulate", "-q", str(spec), "--plot", str(tmp_path / "p.png")], capsys)
    assert r.code == 0, r.err
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
