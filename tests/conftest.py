"""Shared pytest fixtures; each area keeps its fixtures in its own module, imported here."""

import os

from hypothesis import settings
from server_fixtures import client, hermes_server  # noqa: F401

# CI replays the same examples every run (a red CI run then always means a change broke
# something); locally hypothesis explores new examples each time.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
