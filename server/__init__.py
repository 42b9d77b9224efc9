"""HERMES server side: gRPC services, sessions, Prometheus exporter and the `hermes` CLI."""
