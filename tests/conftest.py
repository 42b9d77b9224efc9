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

# fixtures that start a `hermes serve` process: a test using one is in the slow tier
SERVER_FIXTURES = frozenset({"hermes_server", "client"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
