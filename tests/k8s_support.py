"""Reading the Kubernetes manifests as the API server and kubelet would, for the checks that
need no cluster: which pods a StatefulSet makes (names, labels), which of them a selector
picks, and the command a pod's container runs once `$(VAR)` references are expanded."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SCALE_OUT = ROOT / "deploy" / "k8s-scale-out"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # set by the StatefulSet controller


def load(directory: Path) -> list[dict]:
    """Every document in `directory`'s *.yaml files (not below it), tagged with its file."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = path.name
                out.append(doc)
    return out


def pick(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kustomize(directory: Path) -> list[dict]:
    """The objects `kubectl apply -k directory` creates, for the features used here:
    `resources` (files, or directories with their own kustomization) and `$patch: delete`."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[dict] = []
    for res in kust.get("resources", []):
        path = (directory / res).resolve()
        if path.is_dir():
            out += kustomize(path)
        else:
            out += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    for entry in kust.get("patches", []):
        patch = yaml.safe_load(entry["patch"])
        assert patch.pop("$patch") == "delete", "only delete patches are modelled"
        gone = [d for d in out if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        assert len(gone) == 1, f"delete patch matches {len(gone)} objects"
        out.remove(gone[0])
    return out


def statefulset_pods(sts: dict) -> list[tuple[str, dict[str, str]]]:
    """(pod name, labels) of each replica: NAME-0 .. NAME-(replicas-1)."""
    name, labels = sts["metadata"]["name"], sts["spec"]["template"]["metadata"]["labels"]
    return [(f"{name}-{i}", {**labels, POD_NAME_LABEL: f"{name}-{i}"}) for i in range(sts["spec"]["replicas"])]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def pod_command(container: dict, pod_name: str, pod_labels: dict[str, str]) -> list[str]:
    """The container's command with `$(VAR)` expanded from env `value`s and the downward API
    fields the kubelet fills (metadata.name, metadata.labels['...']); other references stay."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "metadata.name":
            env[e["name"]] = pod_name
        elif field and (m := re.fullmatch(r"metadata\.labels\['(.+)'\]", field)):
            env[e["name"]] = pod_labels[m.group(1)]
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in container["command"]]


def flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def service_pods(service: dict, pods: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [name for name, labels in pods if selects(service["spec"].get("selector", {}), labels)]


def grpcroute_table(route: dict, services: dict[str, dict], pods: list[tuple[str, dict[str, str]]],
                    header: str) -> tuple[dict[str, list[str]], list[str]]:
    """What a GRPCRoute does with calls: {value of `header` (exact match): pods its backends
    reach}, and the pods reached by calls matching no header rule (its rule without matches)."""
    by_header: dict[str, list[str]] = {}
    default: list[str] = []
    for rule in route["spec"]["rules"]:
        reached = []
        for ref in rule["backendRefs"]:
            svc = services[ref["name"]]
            assert ref["port"] in {p["port"] for p in svc["spec"]["ports"]}, f"{ref['name']}:{ref['port']}"
            reached += service_pods(svc, pods)
        matches = rule.get("matches", [])
        if not matches:
            default = reached
        for match in matches:
            (h,) = match["headers"]
            assert h["type"] == "Exact" and h["name"] == header, h
            assert h["value"] not in by_header, f"two rules for {h['value']}"
            by_header[h["value"]] = reached
    return by_header, default
