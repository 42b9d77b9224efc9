"""Assemble and run the gRPC server: the Simulator service, health, reflection, auth, TLS, limits,
the idle-session reaper, and the drain sequence (health NOT_SERVING -> refuse new calls ->
finish in-flight -> stop)."""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .. import jsonlog
from ..config import ServerConfig
from ..hooks import Hooks
from ..lifecycle import Lifecycle
from ..sessions import SessionManager
from . import SERVICE, Api, engine
from .auth import BearerTokenInterceptor
from .service import SimulatorService

DRAIN_LINGER_S = 0.3


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC binds it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def tls_credentials(cert_path: str, key_path: str) -> grpc.ServerCredentials:
    """Server TLS credentials from PEM files the operator named (read once, at start)."""
    with open(cert_path, "rb") as f:
        cert = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    return grpc.ssl_server_credentials([(key, cert)])


class HermesServer:
    """One server process' worth of state; `start()` binds, `drain()` stops gracefully."""

    def __init__(self, config: ServerConfig, observers: list[Any] | None = None,
                 extra_handlers: tuple[grpc.GenericRpcHandler, ...] = ()) -> None:
        self.config = config
        self.extra_handlers = extra_handlers  # e.g. the benchmark's echo service on the same server
        self.hooks = Hooks(observers)
        self.lifecycle = Lifecycle()
        self.manager = SessionManager(config.max_sessions, self.hooks, config.session_idle_timeout_s,
                                      config.shard_id)
        self.service = SimulatorService(Api(self.manager, config, self.hooks, self.lifecycle), self.lifecycle,
                                        self.hooks, config)
        self.health = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
        self.port: int | None = None
        self._server: grpc.Server | None = None

    def build(self) -> grpc.Server:
        cfg = self.config
        options = [
            ("grpc.max_receive_message_length", cfg.max_request_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        interceptors = [BearerTokenInterceptor(cfg.token)] if cfg.token else []
        # every call and every open Session stream holds a worker thread; past that many, answer
        # RESOURCE_EXHAUSTED at once rather than queue calls (health checks included) behind streams
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="rpc"),
                             interceptors=interceptors, options=options, maximum_concurrent_rpcs=cfg.workers)
        server.add_generic_rpc_handlers((self.service.generic_handler(), *self.extra_handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE.full_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        return server

    def start(self) -> int:
        """Bind and start serving; returns the bound port (useful with port 0)."""
        cfg = self.config
        self._server = self.build()
        address = host_port(cfg.host, cfg.port)
        if cfg.tls:
            self.port = self._server.add_secure_port(address, tls_credentials(cfg.tls_cert, cfg.tls_key))
        else:
            self.port = self._server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot bind {address}")
        self._server.start()
        self.manager.start_reaper()
        for name in ("", SERVICE.full_name):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        jsonlog.log(logging.INFO, "serving", address=self.address, auth=bool(cfg.token), tls=cfg.tls,
                    max_sessions=cfg.max_sessions, workers=cfg.workers,
                    session_idle_timeout_s=cfg.session_idle_timeout_s, max_call_seconds=cfg.max_call_seconds,
                    session_memory_mb=cfg.session_memory_mb, max_spec_kb=cfg.max_spec_kb,
                    data_dir=cfg.data_dir, engine_guards=engine.engine_support())
        return self.port

    @property
    def address(self) -> str:
        return host_port(self.config.host, self.port or self.config.port)

    def drain(self, grace_s: float | None = None) -> bool:
        """Stop gracefully; True when every in-flight call finished within the grace period."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        t0 = time.monotonic()
        jsonlog.log(logging.INFO, "draining", inflight=self.lifecycle.inflight, grace_s=grace)
        self.health.enter_graceful_shutdown()
        if self.config.drain_mode == "handoff":
            # open sessions are served for the grace period (or until their clients close them)
            self.lifecycle.handing_off = True
            deadline = t0 + grace
            while len(self.manager) and time.monotonic() < deadline:
                time.sleep(0.05)
            grace = max(0.0, deadline - time.monotonic())
            t0 = time.monotonic()
        self.lifecycle.start_drain()
        clean = self.lifecycle.wait_idle(grace)
        # keep answering UNAVAILABLE a moment: calls that arrive once grpc's stop() has begun are
        # never handed to us and end CANCELLED, which tells a client less
        time.sleep(max(0.0, min(DRAIN_LINGER_S, grace - (time.monotonic() - t0))))
        if self._server is not None:
            # open Session streams hold no call in flight between commands: cancel them now
            self._server.stop(grace=min(1.0, max(0.0, grace - (time.monotonic() - t0)))).wait()
        self.manager.stop_reaper()
        self.manager.close_all()
        jsonlog.log(logging.INFO, "stopped", clean=clean, seconds=round(time.monotonic() - t0, 3))
        return clean
