"""The /metrics HTTP endpoint: classic text format, optional bearer token, failed auth logged.

A scrape without the token (when one is set) gets 401 and one JSON log line naming the
peer and why, never the token sent; lines are limited to one per second (the next line
says how many were left out), so a flood of bad scrapes cannot flood the log.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .. import jsonlog

LOG_INTERVAL_S = 1.0


def classic_text_app(registry: CollectorRegistry) -> Callable[..., Any]:
    """prometheus-client's WSGI app, always answering in the classic text format 0.0.4.

    prometheus-client 0.26 writes `vllm:x` as `vllm_x` in OpenMetrics sample lines (but
    not in HELP/TYPE; prometheus/client_python#1177), and Prometheus asks for OpenMetrics
    first, so the exporter never offers it.
    """
    app = make_wsgi_app(registry)

    def text_only(environ: dict, start_response: Callable[..., Any]) -> Any:
        environ["HTTP_ACCEPT"] = "text/plain; version=0.0.4"
        return app(environ, start_response)

    return text_only


def auth_failure(header: str, expected: bytes) -> str | None:
    """Why an Authorization header does not carry the expected bearer token (None: it does).

    The scheme is case-insensitive (RFC 7235); the token is compared in constant time."""
    if not header.strip():
        return "missing authorization header"
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return "authorization scheme is not Bearer"
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected):
        return "wrong bearer token"
    return None


class TokenGate:
    """WSGI middleware: answer only requests with `Authorization: Bearer TOKEN`."""

    def __init__(self, app: Callable[..., Any], token: str, on_failure: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not token or not token.strip():
            raise ValueError("the metrics token is empty")
        self.app, self.expected = app, token.strip().encode("utf-8", "surrogateescape")
        self.on_failure = on_failure
        self.clock = clock
        self._lock = threading.Lock()
        self._last_log = float("-inf")
        self._suppressed = 0

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        reason = auth_failure(environ.get("HTTP_AUTHORIZATION", ""), self.expected)
        if reason is None:
            return self.app(environ, start_response)
        if self.on_failure is not None:
            self.on_failure()
        self._log(reason, environ)
        body = b"401 unauthorized: /metrics needs 'Authorization: Bearer <token>'\n"
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("Content-Length", str(len(body))),
                                            ("WWW-Authenticate", 'Bearer realm="hermes-metrics"')])
        return [body]

    def _log(self, reason: str, environ: dict) -> None:
        now = self.clock()
        with self._lock:
            if now - self._last_log < LOG_INTERVAL_S:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_log = self._suppressed, 0, now
        jsonlog.log(logging.WARNING, "metrics scrape refused", reason=reason,
                    peer=environ.get("REMOTE_ADDR", ""), path=str(environ.get("PATH_INFO", ""))[:200],
                    suppressed_since_last=suppressed)


class MetricsHTTPServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


def serve_app(app: Callable[..., Any], host: str, port: int) -> tuple[MetricsHTTPServer, threading.Thread]:
    """Serve a WSGI app on host:port from a daemon thread (port 0 picks one)."""
    httpd = make_server(host, port, app, MetricsHTTPServer, QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return httpd, thread
