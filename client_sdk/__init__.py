"""Thin Python SDK for HERMES co-simulation clients (imports only the generated stubs)."""
