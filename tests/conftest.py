"""Shared pytest fixtures; each area keeps its fixtures in its own module, imported here."""

import os

import pytest
from hypothesis import settings
from server_fixtures import client, hermes_server  # noqa: F401

# CI replays the same examples every run (a red CI run then always means a change broke
# something); locally hypothesis explores new examples each time.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


# ---------------------------------------------------------------- tiers
# The fast tier (`pytest -m "not slow"`) is the engine and unit tests: seconds. A test is
# slow when it is marked so, uses a fixture that starts a server process, or lives in a
# module whose tests start processes (servers, Prometheus, Node.js, the CLI, benchmarks).
PROCESS_FIXTURES = {"hermes_server", "client"}
PROCESS_MODULES = {
    "test_benchmarks_smoke", "test_case_studies", "test_deploy_compose", "test_deploy_docker",
    "test_metrics_prometheus", "test_metrics_server", "test_node_client", "test_sdk_examples",
    "test_sdk_imports", "test_server_basics", "test_server_bad_input", "test_server_concurrency",
    "test_server_lockstep", "test_server_pipelines", "test_server_protos",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in PROCESS_MODULES or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
