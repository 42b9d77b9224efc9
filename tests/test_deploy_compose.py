"""The compose stack's files: compose YAML, Prometheus config (promtool), Grafana provisioning,
and the dashboard's PromQL checked against a real /metrics scrape (and, when the
`prometheus` binary is present, evaluated by a real Prometheus)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import (  # noqa: E402
    ROOT,
    Driver,
    hermes_server,
    prometheus,
    require_tool,
    sample_names,
    scrape,
)
from test_deploy_docker import arg_value, cmd_argv  # noqa: E402

DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hermes-overview.json"

# PromQL words that are not metric names
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "inf", "nan",
}


VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def compose_text() -> str:
    return (COMPOSE_DIR / "docker-compose.yml").read_text()


def compose() -> dict:
    """The compose file as `docker compose up` reads it with no variables set: every ${VAR:-default}
    replaced by its default (scripts/container_test.sh sets them to pick ports and local images)."""
    return yaml.safe_load(VARIABLE.sub(lambda m: m.group(2) or "", compose_text()))


def host_path(volume: str) -> tuple[Path, str]:
    src, dst = volume.split(":")[:2]
    return (COMPOSE_DIR / src).resolve(), dst


def dashboard_exprs(dash: dict | None = None) -> list[str]:
    dash = dash or json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if m:
            exprs.append(m.group(1))
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, strings, durations, calls removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\s*\(", "(", text)  # function and aggregation calls
    names = set(re.findall(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def concrete(expr: str) -> str:
    """Grafana variables replaced so Prometheus can evaluate the expression."""
    return (expr.replace("$__rate_interval", "1m").replace("$session", ".*").replace("$client", ".*"))


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, session) (rate(vllm:x_bucket{session=~"$session"}[$__rate_interval])))'
            ' / on (session) group_left () clamp_min(hermes_y{a="b"}, 1e-9)')
    assert metric_names(expr) == {"vllm:x_bucket", "hermes_y"}


def test_compose_variables_have_defaults() -> None:
    found = VARIABLE.findall(compose_text())
    assert found, "expected ${VAR:-default} for the host ports and images"
    assert all(default for _, default in found), f"variables without a default: {found}"
    assert "$" not in VARIABLE.sub("", compose_text()).replace("$$", ""), "a variable not in ${VAR:-default} form"


def test_compose_file() -> None:
    services = compose()["services"]
    assert {"hermes", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{name}: image tag not pinned ({image})"
        for vol in svc.get("volumes", []):
            if vol.startswith((".", "/")):
                assert host_path(vol)[0].exists(), f"{name}: {vol} does not exist"
    hermes = services["hermes"]
    context = (COMPOSE_DIR / hermes["build"]["context"]).resolve()
    assert (context / hermes["build"].get("dockerfile", "Dockerfile")).resolve() == (ROOT / "Dockerfile")
    command = hermes.get("command", cmd_argv())
    assert command[:2] == ["hermes", "serve"]
    published = {p.split(":")[-1] for p in hermes["ports"]}
    assert {arg_value(command, "--port"), arg_value(command, "--metrics-port")} <= published


def prometheus_config_path() -> Path:
    for vol in compose()["services"]["prometheus"]["volumes"]:
        src, dst = host_path(vol)
        if dst == "/etc/prometheus/prometheus.yml":
            return src
    raise AssertionError("prometheus.yml is not mounted")


def test_prometheus_config_passes_promtool_and_scrapes_hermes() -> None:
    promtool = require_tool("promtool", "validates the Prometheus config")
    path = prometheus_config_path()
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load(path.read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "hermes")
    assert job.get("scrape_interval", cfg["global"]["scrape_interval"]) == "5s"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    command = compose()["services"]["hermes"].get("command", cmd_argv())
    assert targets == [f"hermes:{arg_value(command, '--metrics-port')}"]


def test_grafana_provisioning_matches_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(host_path(v)[::-1] for v in grafana["volumes"] if v.startswith("."))
    prov = mounts["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((prov / "dashboards" / "hermes.yml").read_text())["providers"][0]
    dash_dir = mounts[provider["options"]["path"]]
    assert DASHBOARD.parent == dash_dir
    dash = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    assert uids == {ds["uid"]}
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for needed in ("first token", "output token", "end-to-end", "queue", "kv", "throughput", "simulated clock",
                   "stage"):
        assert needed in titles, f"no panel about {needed}"


@pytest.fixture(scope="module")
def served_metrics() -> Iterator[tuple[str, str]]:
    """A real server after a session ran: (its /metrics text, its metrics address)."""
    with hermes_server(metrics=True) as server:
        d = Driver(server.target)
        sid = d.create(session_id="dash")
        d.inject(sid, 20)
        d.run_to_idle(sid)
        d.state(sid)
        yield scrape(server.metrics_url), f"127.0.0.1:{server.metrics_port}"
        d.close()


def test_dashboard_queries_name_metrics_the_server_exposes(served_metrics: tuple[str, str]) -> None:
    text, _ = served_metrics
    exposed = sample_names(text)
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, "no metric names found"
    missing = sorted(used - exposed)
    assert not missing, f"dashboard queries metrics /metrics does not expose: {missing}"
    for needed in ("vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
                   "vllm:e2e_request_latency_seconds_bucket", "vllm:num_requests_waiting",
                   "vllm:kv_cache_usage_perc", "hermes_simulated_time_seconds", "hermes_stage_latency_seconds_bucket"):
        assert needed in used


def test_dashboard_queries_evaluate_in_prometheus(served_metrics: tuple[str, str]) -> None:
    _, address = served_metrics
    with prometheus([address]) as prom:
        prom.wait_for('vllm:time_to_first_token_seconds_count{session="dash"}', lambda r: len(r) > 0)
        prom.wait_for("count(hermes_simulated_time_seconds)", lambda r: r, timeout=10)
        time.sleep(2.5)  # a few samples, so rate() and delta() have two points
        empty = []
        for expr in dashboard_exprs():
            result = prom.query(concrete(expr))  # a PromQL error fails here
            if not result:
                empty.append(expr)
        # windowed rates may be empty while the session is idle; everything else must have data
        assert all(("[$__rate_interval]" in e) for e in empty), empty
