"""HERMES server side, one sub-package per concern:

- ``server.api``: the hermes.v1 gRPC service (command table, handlers, wire conversion,
  request checks, auth, assembly of the gRPC server);
- ``server.metrics``: the Prometheus exporter;
- ``server.cli``: the ``hermes`` command line (one module per sub-command);
- top level: what they share: the session registry, hooks, drain lifecycle, errors,
  settings and JSON logs.
"""
