"""`hermes sweep`: one row per run with the right figures, resumable, the same rows on the process
pool and on Ray, and bad sweep files rejected with the field named."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from server_fixtures import ROOT, env_with_root

from server.sweeps.plan import load, parse
from server.sweeps.runner import FIGURES, figures, run_sweep
from sim_engine import Simulation, SpecError, load_spec

BASE = str(ROOT / "examples" / "specs" / "llama3-8b-h100.yaml")


def small_sweep(**extra) -> dict:
    doc = {"base": BASE, "set": {"workload.num_requests": 25},
           "grid": {"workload.arrival.rate": [2.0, 6.0], "clients[0].hardware": ["H100-SXM", "L40S"]}, "seeds": 2}
    doc.update(extra)
    return doc


def read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_rows_hold_the_swept_values_and_each_runs_summary(tmp_path: Path) -> None:
    plan = parse(small_sweep())
    result = run_sweep(plan, tmp_path, workers=2, progress=False)
    assert result.ran == 8 and result.skipped == 0 and not result.errors
    rows = read(tmp_path / "runs.csv")
    assert [int(r["run"]) for r in rows] == list(range(8))  # plan order, whatever finished first
    assert list(rows[0]) == ["run_id", "run", "seed", "workload.arrival.rate", "clients[0].hardware", *FIGURES]
    run = plan.runs[5]
    row = rows[5]
    assert (float(row["workload.arrival.rate"]), row["clients[0].hardware"], int(row["seed"])) == (
        run.config["workload.arrival.rate"], run.config["clients[0].hardware"], run.seed)
    sim = Simulation(load_spec(BASE, {"workload.num_requests": 25, **run.config, "seed": run.seed}))
    sim.run()
    expected = figures(sim.summary())
    assert {k: float(row[k]) for k in FIGURES} == {k: float(v) for k, v in expected.items()}
    assert len({r["run_id"] for r in rows}) == 8


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_rerunning_done_runs(tmp_path: Path) -> None:
    plan = parse(small_sweep(seeds=1))
    run_sweep(plan, tmp_path, workers=1, progress=False)
    full = (tmp_path / "runs.csv").read_text()
    lines = full.splitlines(keepends=True)
    (tmp_path / "runs.csv").write_text("".join(lines[:1] + lines[2:4]))  # two runs "lost" in an interruption
    seen = []
    result = run_sweep(plan, tmp_path, workers=1, progress=False, on_row=seen.append)
    assert result.skipped == 2 and result.ran == 2
    assert sorted(int(r["run"]) for r in seen) == [0, 3]
    assert (tmp_path / "runs.csv").read_text() == full
    again = run_sweep(plan, tmp_path, workers=1, progress=False)
    assert again.ran == 0 and again.skipped == 4


def test_random_sample_is_seeded_and_within_its_bounds() -> None:
    doc = small_sweep()
    del doc["grid"]
    doc["random"] = {"samples": 6, "seed": 3, "fields": {"workload.arrival.rate": {"loguniform": [1, 8]},
                                                          "clients[0].scheduler.max_num_seqs": {"int": [8, 64]},
                                                          "clients[0].hardware": {"choice": ["H100-SXM", "L40S"]}}}
    a, b = parse(doc), parse(doc)
    assert a.configs == b.configs and len(a.runs) == 12
    for c in a.configs:
        assert 1 <= c["workload.arrival.rate"] <= 8 and 8 <= c["clients[0].scheduler.max_num_seqs"] <= 64
    doc["random"]["seed"] = 4
    assert parse(doc).configs != a.configs


@pytest.mark.parametrize("change, field", [
    ({"grid": {"workload.arrival.rat": [1.0]}}, "grid.workload.arrival.rat"),
    ({"grid": {"clients[0].hardware": ["H999"]}}, "grid.clients[0].hardware"),
    ({"grid": {"workload.arrival.rate": [2.0, -1.0]}}, "grid.workload.arrival.rate"),
    ({"grid": {"workload.arrival.rate": 3}}, "grid.workload.arrival.rate"),
    ({"seeds": "three"}, "seeds"),
    ({"gird": {}}, "gird"),
    ({"set": {"workload.num_request": 5}}, "set.workload.num_request"),
    ({"base": "no-such-spec.yaml"}, "base"),
    ({"random": {"samples": 2, "fields": {"workload.arrival.rate": {"uniform": [1, 2]}}}}, "random"),
    ({"grid": None, "random": {"samples": 2, "fields": {"workload.arrival.rate": {"normal": [1, 2]}}}},
     "random.fields.workload.arrival.rate"),
    ({"prices": {"H100-SXM": "cheap"}}, "prices.H100-SXM"),
])
def test_bad_sweep_files_name_the_field(change: dict, field: str) -> None:
    doc = small_sweep(**change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(SpecError) as err:
        parse(doc)
    assert err.value.field == field, str(err.value)


@pytest.mark.slow
def test_cli_runs_a_sweep_file_and_rejects_a_bad_one(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(small_sweep(seeds=1)))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "server.cli", "sweep", str(sweep), "--out", str(out),
                           "--workers", "2", "--plot", "-q"], cwd=ROOT, env=env_with_root(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(read(out / "runs.csv")) == 4
    assert (out / "plots" / "ttft_p90.png").stat().st_size > 0
    if importlib.util.find_spec("pyarrow"):
        import pyarrow.parquet as pq

        assert pq.read_table(out / "runs.parquet").num_rows == 4
    sweep.write_text(yaml.safe_dump(small_sweep(grid={"workload.arrival.rat": [1.0]})))
    proc = subprocess.run([sys.executable, "-m", "server.cli", "sweep", str(sweep), "--out", str(out)],
                          cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "grid.workload.arrival.rat" in proc.stderr


def test_example_sweep_files_are_valid() -> None:
    files = sorted((ROOT / "examples" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        assert load(path).runs


@pytest.mark.slow
def test_process_pool_and_local_ray_give_identical_rows(tmp_path: Path) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'hermes-sim[ray]'); the Ray backend is untested here")
    plan = parse(small_sweep(seeds=1))
    pool = run_sweep(plan, tmp_path / "pool", workers=2, progress=False)
    ray_ = run_sweep(plan, tmp_path / "ray", backend="ray", workers=2, progress=False)
    assert not pool.errors and not ray_.errors
    assert (tmp_path / "pool" / "runs.csv").read_text() == (tmp_path / "ray" / "runs.csv").read_text()
    assert len(pool.rows) == 4


def test_rayjob_manifest_runs_a_valid_sweep_on_the_ray_backend() -> None:
    """Static check of deploy/k8s/rayjob-sweep.yaml: a KubeRay RayJob whose entrypoint is a `hermes sweep`
    command line on the Ray backend, reading a sweep file the mounted ConfigMap holds and that validates."""
    import shlex

    from server.cli import build_parser

    k8s = ROOT / "deploy" / "k8s"
    job = yaml.safe_load((k8s / "rayjob-sweep.yaml").read_text())
    cm = yaml.safe_load((k8s / "configmap-sweeps.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "hermes"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "sweep" and args.backend == "ray" and args.address == "auto"
    head = spec["rayClusterSpec"]["headGroupSpec"]
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert head["rayStartParams"]["num-cpus"] == "0" and workers and workers[0]["replicas"] >= 1
    head_pod = head["template"]["spec"]
    container = head_pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in head_pod["volumes"]}
    sweep_path = Path(args.sweep)
    volume = volumes[mounts[str(sweep_path.parent)]]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert any(args.out == m or args.out.startswith(m + "/") for m in mounts), "results dir must be mounted"
    plan = parse(yaml.safe_load(cm["data"][sweep_path.name]))
    assert len(plan.runs) > 1
    images = {container["image"]} | {g["template"]["spec"]["containers"][0]["image"] for g in workers}
    assert len(images) == 1  # head and workers run the same (Ray-enabled) image
    dockerfile = (k8s / "Dockerfile.ray").read_text()
    assert f"ray[default]=={spec['rayClusterSpec']['rayVersion']}" in dockerfile
    for g in workers:
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"]["cpu"] == res["limits"]["cpu"]
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    assert "configmap-sweeps.yaml" in kustomization["resources"]
