"""`hermes health`: a tiny grpc.health.v1 client (the Docker HEALTHCHECK command).

Exit code 0 when the target reports SERVING for the service, 1 otherwise
(NOT_SERVING, unknown service, unreachable, timeout).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(target: str, tls_ca: str | None, server_name: str | None) -> grpc.Channel:
    if tls_ca is None:
        return grpc.insecure_channel(target)
    with open(tls_ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, creds, options=options)


def check(target: str, service: str = "", timeout: float = 3.0, tls_ca: str | None = None,
          server_name: str | None = None) -> tuple[bool, str]:
    """Ask `target` for the health of `service`; return (serving, status text)."""
    try:
        with _channel(target, tls_ca, server_name) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except OSError as err:
        return False, f"ERROR: {err}"
    except grpc.RpcError as err:
        code = err.code() if hasattr(err, "code") else None
        name = code.name if code is not None else "ERROR"
        return False, f"{name}: {err.details() if hasattr(err, 'details') else err}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def _run(args: argparse.Namespace) -> int:
    ok, status = check(args.target, args.service, args.timeout, args.tls_ca, args.tls_server_name)
    label = args.service or "(server)"
    print(f"{args.target} {label}: {status}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="check a server's gRPC health (exit 0 when SERVING)",
        description="Query grpc.health.v1.Health/Check; exit 0 when SERVING, 1 otherwise.",
    )
    p.add_argument(
        "--target", default="127.0.0.1:50051", help="HOST:PORT of the server (default %(default)s)"
    )
    p.add_argument("--service", default="", help="service name to check; empty = the whole server")
    p.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for the reply (default %(default)s)"
    )
    p.add_argument("--tls-ca", default=None, help="PEM CA bundle: talk TLS to a server started with --tls-cert")
    p.add_argument("--tls-server-name", default=None, help="expected name in the server's certificate")
    p.set_defaults(func=_run)
