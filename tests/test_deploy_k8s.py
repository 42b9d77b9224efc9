"""The Kubernetes manifests parse, hang together, and point their probes at ports (and
gRPC health services) a real `hermes serve` started with the container's command serves."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from k8s_support import (  # noqa: E402
    K8S,
    SCALE_OUT,
    flag,
    grpcroute_table,
    kustomize,
    load,
    pick,
    pod_command,
    selects,
    service_pods,
    statefulset_pods,
)
from metrics_support import (  # noqa: E402
    ROOT,
    free_port,
    hermes_argv,
    start_process,
    stop_process,
    subprocess_env,
    wait_for_line,
)

from client_sdk.client import SHARD_HEADER  # noqa: E402
from server.cli.serve import validate_shard_id  # noqa: E402


def docs() -> list[dict]:
    return load(K8S)


def one(kind: str, name: str | None = None) -> dict:
    return pick(docs(), kind, name)


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


def workload(kind: str) -> tuple[dict, dict, list[str], str]:
    """(pod spec, container, command as the kubelet runs it, pod name) of the server workload:
    the single-replica Deployment, or the StatefulSet's second pod."""
    if kind == "Deployment":
        pod = one("Deployment", "hermes")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        command = container.get("command") or json.loads(
            re.search(r"^CMD (.*)$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
        return pod, container, command, ""  # a Deployment pod's name is random: shard = host name
    sts = pick(load(SCALE_OUT), "StatefulSet", "hermes")
    pod = sts["spec"]["template"]["spec"]
    name, labels = statefulset_pods(sts)[1]
    return pod, pod["containers"][0], pod_command(pod["containers"][0], name, labels), name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_probes_hit_ports_and_services_the_container_serves(kind: str) -> None:
    pod, container, command, pod_name = workload(kind)
    assert command[:2] == ["hermes", "serve"]
    grpc_port, metrics_port = int(flag(command, "--port")), int(flag(command, "--metrics-port"))
    declared = {p["containerPort"] for p in container["ports"]}
    assert {grpc_port, metrics_port} <= declared
    probes = [container[k] for k in ("livenessProbe", "readinessProbe", "startupProbe") if k in container]
    assert {"livenessProbe", "readinessProbe"} <= set(container)
    for probe in probes:
        assert "grpc" in probe, "native gRPC probes expected"
        assert probe["grpc"]["port"] == grpc_port
    # the drain (grace, then up to a second of linger) ends before the kubelet's SIGKILL
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= float(flag(command, "--drain-grace", "30")) + 5

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
        if kind == "StatefulSet":  # the pod is the shard of its name, and drains within its grace
            from client_sdk import Client

            with Client(f"127.0.0.1:{local_grpc}") as c:
                assert c.info().shard_id == pod_name
                with c.create_session("hetero-demo") as s:
                    assert s.id.startswith(f"{pod_name}.")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=grace) == 0
            assert time.monotonic() - t0 < grace
    finally:
        stop_process(proc)


@pytest.mark.slow
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


# ---------------------------------------------------------------- scale-out (deploy/k8s-scale-out)


def scale_out() -> tuple[list[dict], dict, list[tuple[str, dict[str, str]]]]:
    """The objects `kubectl apply -k deploy/k8s-scale-out` creates, its StatefulSet, its pods."""
    objs = kustomize(SCALE_OUT)
    sts = pick(objs, "StatefulSet", "hermes")
    return objs, sts, statefulset_pods(sts)


@pytest.mark.slow
def test_scale_out_kustomization_swaps_the_deployment_for_a_statefulset() -> None:
    objs, _, _ = scale_out()
    names = sorted((d["kind"], d["metadata"]["name"]) for d in objs)
    assert len(set(names)) == len(names), "two objects of one kind share a name"
    assert not any(kind == "Deployment" for kind, _ in names)
    assert {("StatefulSet", "hermes"), ("Service", "hermes"), ("Service", "hermes-shards"),
            ("PodDisruptionBudget", "hermes"), ("ServiceMonitor", "hermes")} <= set(names)
    for d in [*objs, *(d for d in load(SCALE_OUT) if d["kind"] != "Kustomization")]:  # and grpcroute.yaml
        assert d.get("apiVersion") and d["metadata"].get("name"), d["_file"]
    if shutil.which("kubectl"):  # the real kustomize agrees with the model above
        for directory, want in ((SCALE_OUT, names), (K8S, sorted((d["kind"], d["metadata"]["name"])
                                                                  for d in kustomize(K8S)))):
            out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            got = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out.stdout) if d)
            assert got == want


def test_statefulset_services_and_pdb_reference_each_other() -> None:
    objs, sts, pods = scale_out()
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    assert spec["replicas"] >= 2 and all(selects(spec["selector"]["matchLabels"], labels) for _, labels in pods)
    headless = pick(objs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    placement = pick(objs, "Service", "hermes")
    assert placement["spec"].get("type", "ClusterIP") == "ClusterIP"
    container = pod["containers"][0]
    port_names = {p["name"] for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
    for svc in (headless, placement):
        assert service_pods(svc, pods) == [name for name, _ in pods], svc["metadata"]["name"]
        assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
        assert "grpc" in {p["name"] for p in svc["spec"]["ports"]}
    pdb = pick(objs, "PodDisruptionBudget", "hermes")
    assert service_pods({"spec": {"selector": pdb["spec"]["selector"]["matchLabels"]}}, pods) == [n for n, _ in pods]
    assert pdb["spec"]["maxUnavailable"] == 1
    monitor = pick(objs, "ServiceMonitor", "hermes")
    scraped = [s["metadata"]["name"] for s in objs if s["kind"] == "Service"
               and selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert scraped == ["hermes"], f"each pod scraped once, through one Service: {scraped}"
    # one CPU per pod (the simulator is single-threaded); a shard per pod, named after it
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"] == "1"
    shard_ids = [flag(pod_command(container, name, labels), "--shard-id") for name, labels in pods]
    assert shard_ids == [validate_shard_id(name) for name, _ in pods]
    assert flag(container["command"], "--drain-mode") == "handoff"


def test_grpcroute_sends_each_shard_header_to_its_own_pod() -> None:
    objs, sts, pods = scale_out()
    example = load(SCALE_OUT)
    gateway, route = pick(example, "Gateway"), pick(example, "GRPCRoute")
    listeners = {x["name"]: x for x in gateway["spec"]["listeners"]}
    for parent in route["spec"]["parentRefs"]:
        assert parent["name"] == gateway["metadata"]["name"]
        assert {"kind": "GRPCRoute"} in listeners[parent["sectionName"]]["allowedRoutes"]["kinds"]
    services = {d["metadata"]["name"]: d for d in [*objs, *example] if d["kind"] == "Service"}
    by_header, default = grpcroute_table(route, services, pods, SHARD_HEADER)
    shard_of = {name: flag(pod_command(sts["spec"]["template"]["spec"]["containers"][0], name, labels),
                           "--shard-id") for name, labels in pods}
    # every shard's header reaches exactly its pod; no header reaches any (ready) pod
    assert by_header == {shard_of[name]: [name] for name, _ in pods}
    assert default == [name for name, _ in pods]
    for rule in route["spec"]["rules"]:  # per-pod Services keep a draining pod reachable (handoff)
        if rule.get("matches"):
            assert all(services[ref["name"]]["spec"]["publishNotReadyAddresses"] is True for ref in rule["backendRefs"])
