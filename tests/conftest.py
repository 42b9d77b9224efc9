"""Shared pytest fixtures; each area keeps its fixtures in its own module, imported here."""

from server_fixtures import client, hermes_server  # noqa: F401
