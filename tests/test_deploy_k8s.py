"""The Kubernetes manifests parse, hang together, and point their probes at ports (and
gRPC health services) a real `hermes serve` started with the container's command serves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

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

K8S = ROOT / "deploy" / "k8s"


def docs() -> list[dict]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = path.name
                out.append(doc)
    return out


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_manifest_parses_and_is_named() -> None:
    all_docs = docs()
    assert {d["kind"] for d in all_docs} >= {"Deployment", "Service", "ServiceMonitor", "ConfigMap", "Job"}
    for d in all_docs:
        if d["kind"] == "Kustomization":
            for res in d["resources"]:
                assert (K8S / res).is_file(), res
            continue
        assert d.get("apiVersion") and d["metadata"].get("name"), d["_file"]


def test_service_and_servicemonitor_select_the_deployment() -> None:
    dep, svc, mon = one("Deployment", "hermes"), one("Service", "hermes"), one("ServiceMonitor")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert {"grpc", "metrics"} <= set(svc_ports)
    for p in svc_ports.values():
        assert p["targetPort"] in port_names or p["targetPort"] in port_names.values()
    for ep in mon["spec"]["endpoints"]:
        assert ep["port"] in svc_ports and ep["path"] == "/metrics"
    res = container["resources"]["requests"]
    assert res.get("cpu") and res.get("memory")


def test_probes_hit_ports_and_services_the_container_serves() -> None:
    dep = one("Deployment", "hermes")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    command = container.get("command") or json.loads(
        re.search(r"^CMD (.*)$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
    assert command[:2] == ["hermes", "serve"]
    grpc_port, metrics_port = int(flag(command, "--port")), int(flag(command, "--metrics-port"))
    declared = {p["containerPort"] for p in container["ports"]}
    assert {grpc_port, metrics_port} <= declared
    probes = [container[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in container]
    assert {"livenessProbe", "readinessProbe"} <= set(container)
    for probe in probes:
        assert "grpc" in probe, "native gRPC probes expected"
        assert probe["grpc"]["port"] == grpc_port

    # run the container's command (ports remapped to free loopback ports) and ask each
    # probe's health service what the kubelet would ask
    local_grpc, local_metrics = free_port(), free_port()
    argv = list(command[1:])
    argv[argv.index("--port") + 1] = str(local_grpc)
    argv[argv.index("--metrics-port") + 1] = str(local_metrics)
    proc = start_process(hermes_argv() + argv)
    lines: list[str] = []
    try:
        wait_for_line(proc, r"listening on", 60, lines)
        for probe in probes:
            service = probe["grpc"].get("service", "")
            out = subprocess.run(hermes_argv() + ["health", "--target", f"127.0.0.1:{local_grpc}",
                                                  "--service", service], cwd=ROOT, env=subprocess_env(),
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, f"probe service {service!r}: {out.stdout}{out.stderr}"
    finally:
        stop_process(proc)
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 30, "must exceed hermes serve's default drain grace (30 s)"


def test_sweep_job_runs_hermes_simulate_per_index(tmp_path: Path) -> None:
    job, cm = one("Job", "hermes-sweep"), one("ConfigMap", "hermes-specs")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] >= spec["parallelism"] >= 1
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    command = container["command"]
    assert command[:2] == ["hermes", "simulate"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    spec_path = Path(command[2])
    spec_volume = next(n for n, p in mounts.items() if str(spec_path.parent) == p)
    assert volumes[spec_volume]["configMap"]["name"] == cm["metadata"]["name"]
    assert spec_path.name in cm["data"]
    index_var = next(e["name"] for e in container["env"]
                     if "job-completion-index" in e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", ""))
    assert any(f"$({index_var})" in a for a in command)
    # run index 3 as the pod would: the ConfigMap's spec at its mount path, Kubernetes'
    # $(VAR) expansion done here, a shortened workload so the test stays quick
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / spec_path.name).write_text(cm["data"][spec_path.name])
    results = tmp_path / "results"
    results.mkdir()
    argv = []
    for a in command[1:]:
        a = a.replace(f"$({index_var})", "3").replace(str(spec_path.parent), str(tmp_path / "specs"))
        out_mount = mounts.get("results")
        if out_mount:
            a = a.replace(out_mount, str(results))
        argv.append(a)
    argv += ["--set", "workload.num_requests=40"]
    out = subprocess.run(hermes_argv() + argv, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summaries = list(results.glob("*.json"))
    assert len(summaries) == 1 and "3" in summaries[0].name
    summary = json.loads(summaries[0].read_text())
    assert summary["seed"] == 3 and summary["requests"]["completed"] == 40
