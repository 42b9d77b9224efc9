"""`Client`: a channel to a HERMES server and the entry point for sessions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from hermes.v1 import estimate_pb2, session_pb2, simulator_pb2_grpc

from .session import Session, _struct
from .transport import StreamTransport, UnaryTransport

SpecLike = str | Path | Mapping[str, Any]


def spec_source(spec: SpecLike) -> session_pb2.SpecSource:
    """A preset name, YAML/JSON text, a local spec file (sent as text), or a spec dict."""
    if isinstance(spec, Mapping):
        return session_pb2.SpecSource(document=_struct(spec))
    if isinstance(spec, Path):
        return session_pb2.SpecSource(yaml=spec.read_text())
    text = str(spec)
    if "\n" in text or text.lstrip().startswith("{"):
        return session_pb2.SpecSource(yaml=text)
    if text.endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
        return session_pb2.SpecSource(yaml=Path(text).read_text())
    return session_pb2.SpecSource(preset=text)


class Client:
    """Connect to `target` ("host:port"). `token` is sent as `authorization: Bearer TOKEN`.

    TLS: `tls=True` verifies the server against the system's CA roots; `tls_ca` (PEM bytes,
    or a path to a PEM file) against that CA instead; `tls_server_name` overrides the name
    expected in the certificate (e.g. when connecting by IP address).
    """

    def __init__(self, target: str, token: str | None = None, *, timeout: float | None = None,
                 max_message_mb: int = 256, options: Iterable[tuple[str, Any]] = (), tls: bool = False,
                 tls_ca: bytes | str | Path | None = None, tls_server_name: str | None = None) -> None:
        size = max_message_mb * 1024 * 1024
        opts = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size), *options]
        self.target = target
        if tls or tls_ca is not None:
            if tls_server_name:
                opts.append(("grpc.ssl_target_name_override", tls_server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca))
            self.channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.stub = simulator_pb2_grpc.SimulatorStub(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.unary = UnaryTransport(self.stub, self.metadata, timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def open_stream(self) -> StreamTransport:
        return StreamTransport(self.stub, self.metadata)

    # ------------------------------------------------------------ server-wide calls

    def info(self) -> session_pb2.GetInfoReply:
        return self.unary.call("get_info", session_pb2.GetInfoRequest())

    def list_sessions(self) -> list[session_pb2.SessionInfo]:
        return list(self.unary.call("list_sessions", session_pb2.ListSessionsRequest()).sessions)

    def create_session(self, spec: SpecLike, *, seed: int | None = None,
                       overrides: Mapping[str, Any] | None = None, session_id: str = "",
                       event_kinds: Iterable[int] = (), stream: bool = False, keep: bool = False) -> Session:
        """Create a session from a preset name, YAML text, a spec file or a spec dict.

        `overrides` are dotted spec paths ({"router.policy": "external"}); `stream=True`
        drives the session over a bidirectional stream. A session created on a stream is
        closed by the server when the stream ends (this process exits or dies), unless
        `keep=True`.
        """
        req = session_pb2.CreateSessionRequest(spec=spec_source(spec), session_id=session_id,
                                               event_kinds=list(event_kinds), keep=keep)
        if seed is not None:
            req.seed = seed
        for key, value in (overrides or {}).items():
            req.overrides[key].CopyFrom(_value(value))
        transport = self.open_stream() if stream else self.unary
        try:
            info = transport.call("create_session", req).session
        except Exception:
            if stream:
                transport.close()
            raise
        return Session(self, info, transport, owns_transport=stream)

    def estimate_step(self, client: Mapping[str, Any], prefills: Iterable[tuple[int, int]] = (),
                      decode_context_tokens: Iterable[int] = ()) -> estimate_pb2.EstimateStepReply:
        """Time and energy of one batch step on a serving instance (a spec `clients` entry), no session.

        `prefills`: (cached_tokens, new_tokens) per prefill chunk; `decode_context_tokens`: the KV
        context of each request decoding one token.
        """
        req = estimate_pb2.EstimateStepRequest(
            client=_struct(client), decode_context_tokens=list(decode_context_tokens),
            prefills=[estimate_pb2.PrefillChunk(cached_tokens=c, new_tokens=n) for c, n in prefills])
        return self.unary.call("estimate_step", req)

    def attach(self, session: str | session_pb2.SessionInfo, stream: bool = False) -> Session:
        """A Session object for an existing session (by id or SessionInfo)."""
        if isinstance(session, str):
            info = self.unary.call("get_session", session_pb2.GetSessionRequest(session_id=session)).session
        else:
            info = session
        return Session(self, info, self.open_stream() if stream else self.unary, owns_transport=stream)


def _pem(ca: bytes | str | Path | None) -> bytes | None:
    if ca is None or isinstance(ca, bytes):
        return ca
    return Path(ca).read_bytes()


def _value(value: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if value is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, (int, float)):
        v.number_value = value
    elif isinstance(value, str):
        v.string_value = value
    elif isinstance(value, Mapping):
        v.struct_value.update(value)
    else:
        v.list_value.extend(list(value))
    return v
