"""`Client`: a channel to a HERMES server and the entry point for sessions."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from hermes.v1 import estimate_pb2, session_pb2, simulator_pb2_grpc

from .errors import HermesError, Unavailable
from .replay import ReplayLog, ReplayTransport
from .session import Session, _struct
from .transport import StreamTransport, UnaryTransport

SpecLike = str | Path | Mapping[str, Any]
SHARD_HEADER = "x-hermes-shard"


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
    """Connect to one server (`"host:port"`) or to several replicas of a scaled-out service.

    `token` is sent as `authorization: Bearer TOKEN`. With several targets (a list, or
    `Client.from_dns("headless-service:50051")`), `create_session` places each session on
    the less loaded of two random ready replicas, every later call goes straight to the
    session's owner, and a session whose owner dies or drains is rebuilt on another replica
    by replaying its log (client_sdk/replay.py). One target behaves as a plain client.

    TLS: `tls=True` verifies the server against the system's CA roots; `tls_ca` (PEM bytes,
    or a path to a PEM file) against that CA instead; `tls_server_name` overrides the name
    expected in the certificate (e.g. when connecting by IP address).
    """

    def __init__(self, target: str | Sequence[str], token: str | None = None, *, timeout: float | None = None,
                 max_message_mb: int = 256, options: Iterable[tuple[str, Any]] = (), tls: bool = False,
                 tls_ca: bytes | str | Path | None = None, tls_server_name: str | None = None,
                 digest_every: int = 64, allow_cross_version_replay: bool = False,
                 placement_seed: int | None = None) -> None:
        targets = [target] if isinstance(target, str) else list(dict.fromkeys(target))
        if not targets:
            raise ValueError("target: give at least one host:port")
        size = max_message_mb * 1024 * 1024
        self._options = [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size),
                         *options]
        self._credentials = None
        if tls or tls_ca is not None:
            if tls_server_name:
                self._options.append(("grpc.ssl_target_name_override", tls_server_name))
            self._credentials = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca))
        self.targets = targets
        self.target = targets[0]
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self._stubs: dict[str, simulator_pb2_grpc.SimulatorStub] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self.stub = self._stub(self.target)
        self.channel = self._channels[self.target]
        self.unary = UnaryTransport(self.stub, self.metadata, timeout)
        self.digest_every = digest_every
        self.allow_cross_version_replay = allow_cross_version_replay
        self._rng = random.Random(placement_seed)
        self._shard_targets: dict[str, str] = {}  # shard id -> target, learnt from GetInfo

    @classmethod
    def from_dns(cls, name: str, **kwargs: Any) -> Client:
        """One target per address that `name` ("host:port", e.g. a headless Service) resolves to."""
        host, _, port = name.rpartition(":")
        addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)})
        return cls([f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addrs], **kwargs)

    @property
    def sharded(self) -> bool:
        return len(self.targets) > 1

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def open_stream(self) -> StreamTransport:
        return StreamTransport(self.stub, self.metadata)

    # ------------------------------------------------------------ replicas

    def _stub(self, target: str) -> simulator_pb2_grpc.SimulatorStub:
        if target not in self._stubs:
            self._channels[target] = grpc.insecure_channel(target, options=self._options) \
                if self._credentials is None else grpc.secure_channel(target, self._credentials, options=self._options)
            self._stubs[target] = simulator_pb2_grpc.SimulatorStub(self._channels[target])
        return self._stubs[target]

    def transport_for(self, target: str, stream: bool = False,
                      session_id: str = "") -> UnaryTransport | StreamTransport:
        """A transport to `target`; with a SHARD.LOCAL session id its calls (and a stream's,
        which is routed once, when opened) carry the `x-hermes-shard: SHARD` header, which a
        gateway in front of the replicas routes on (deploy/k8s-scale-out/grpcroute.yaml)."""
        stub = self._stub(target)
        meta = self.metadata
        if "." in session_id:
            meta = (*meta, (SHARD_HEADER, session_id.split(".", 1)[0]))
        return StreamTransport(stub, meta) if stream else UnaryTransport(stub, meta, self.timeout)

    def info_of(self, target: str, timeout: float = 5.0) -> session_pb2.GetInfoReply:
        info = UnaryTransport(self._stub(target), self.metadata).call("get_info", session_pb2.GetInfoRequest(),
                                                                      timeout)
        if info.shard_id:
            self._shard_targets[info.shard_id] = target
        return info

    def placement_order(self, exclude: Iterable[str] = ()) -> Iterator[str]:
        """Ready replicas, best first: the less loaded of two random ones, then the rest."""
        skip = set(exclude)
        ready: list[tuple[int, str]] = []
        for target in self._rng.sample(self.targets, len(self.targets)):
            if target in skip:
                continue
            try:
                info = self.info_of(target)
            except HermesError:
                continue
            if info.accepting_sessions or not info.shard_id:
                ready.append((info.sessions + info.busy_workers, target))
            if len(ready) == 2:
                break
        ready.sort(key=lambda x: x[0])
        yield from (t for _, t in ready)
        yield from (t for t in self.targets if t not in skip and t not in {r for _, r in ready})

    def owner_of(self, session_id: str) -> str:
        """The target holding `session_id` (by its shard prefix; the first target otherwise)."""
        shard = session_id.split(".", 1)[0] if "." in session_id else ""
        if self.sharded and shard and shard not in self._shard_targets:
            for target in self.targets:
                try:
                    self.info_of(target)
                except HermesError:
                    continue
        return self._shard_targets.get(shard, self.target)

    # ------------------------------------------------------------ server-wide calls

    def info(self) -> session_pb2.GetInfoReply:
        return self.unary.call("get_info", session_pb2.GetInfoRequest())

    def list_sessions(self) -> list[session_pb2.SessionInfo]:
        out: list[session_pb2.SessionInfo] = []
        for target in self.targets:
            try:
                out += self.transport_for(target).call("list_sessions", session_pb2.ListSessionsRequest()).sessions
            except HermesError:
                if not self.sharded:
                    raise
        return out

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
        if self.sharded:
            return self._create_placed(req, stream)
        transport = self.open_stream() if stream else self.unary
        try:
            info = transport.call("create_session", req).session
        except Exception:
            if stream:
                transport.close()
            raise
        if not stream:  # later calls name the owner's shard (a gateway in front routes on it)
            transport = self.transport_for(self.target, session_id=info.session_id)
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

    def _create_placed(self, req: session_pb2.CreateSessionRequest, stream: bool) -> Session:
        if req.session_id:
            raise ValueError("session_id: a sharded client lets the servers name sessions (SHARD.LOCAL)")
        last: HermesError | None = None
        for target in self.placement_order():
            transport = self.transport_for(target, stream)
            try:
                info = transport.call("create_session", req).session
            except HermesError as err:
                transport.close()
                if err.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = err
                continue
            log = ReplayLog(req, self.info_of(target).server_version)
            return self._session(info, log, target, stream, transport)
        raise last or Unavailable("no replica is ready")

    def _session(self, info: session_pb2.SessionInfo, log: ReplayLog, target: str, stream: bool,
                 transport: Any = None) -> Session:
        t = ReplayTransport(self, log, target, info.session_id, stream, self.digest_every,
                            self.allow_cross_version_replay, transport)
        return Session(self, info, t, owns_transport=True)

    def attach(self, session: str | session_pb2.SessionInfo, stream: bool = False,
               log: ReplayLog | None = None) -> Session:
        """A Session object for an existing session (by id or SessionInfo). On a sharded client,
        calls go to the owner; with the session's replay `log` (a fork's) it also survives
        the owner's loss."""
        sid = session if isinstance(session, str) else session.session_id
        target = self.owner_of(sid)
        if isinstance(session, str):
            info = self.transport_for(target, session_id=sid).call(
                "get_session", session_pb2.GetSessionRequest(session_id=sid)).session
        else:
            info = session
        if self.sharded and log is not None:
            return self._session(info, log, target, stream)
        return Session(self, info, self.transport_for(target, stream, sid), owns_transport=True)


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
