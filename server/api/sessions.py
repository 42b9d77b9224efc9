"""Session lifecycle commands: info, create/get/list/close, fork, snapshot/restore."""

from __future__ import annotations

from typing import Any

from hermes.v1 import common_pb2, session_pb2

from ..errors import exhausted, from_engine, invalid, not_found
from ..sessions import Session
from . import engine, validate, wire
from .base import ApiBase, CallContext

API_VERSION = "hermes.v1"
SERVER_VERSION = "0.1.0"
MAX_OVERRIDES = 1000  # dotted-path overrides in one CreateSession
MAX_EVENT_KINDS = 64  # entries of event_kinds (there are 9 kinds; repeats are harmless up to this)
CAPABILITIES = ("stream", "fork", "snapshot", "external_routing", "external_batching", "wakeups",
                "cluster_changes",
                "event_filter", "batched_events", "stream_bound_sessions", "idle_timeout")


class SessionApi(ApiBase):
    def get_info(self, req: session_pb2.GetInfoRequest, call: CallContext) -> session_pb2.GetInfoReply:
        cfg = self.config
        reply = session_pb2.GetInfoReply(
            api_version=API_VERSION, server_version=SERVER_VERSION,
            capabilities=list(CAPABILITIES) + (["auth"] if cfg.token else []) + (["tls"] if cfg.tls else []),
            router_policies=list(engine.router_policies()),
            shard_id=cfg.shard_id, sessions=len(self.manager), busy_workers=self.lifecycle.inflight,
            accepting_sessions=not (self.lifecycle.draining or self.lifecycle.handing_off),
            limits=session_pb2.Limits(
                max_sessions=cfg.max_sessions, max_requests_per_session=cfg.max_requests_per_session,
                max_message_bytes=cfg.max_message_bytes, max_events_per_reply=cfg.max_events_per_reply,
                max_snapshots_per_session=cfg.max_snapshots_per_session,
                session_idle_timeout_s=int(cfg.session_idle_timeout_s),
                max_call_seconds=cfg.max_call_seconds, session_memory_bytes=cfg.session_memory_bytes,
                max_spec_bytes=cfg.max_spec_bytes, max_request_bytes=cfg.max_request_bytes),
        )
        for p in engine.preset_summaries():
            reply.presets.add(name=p.name, description=p.description, models=p.models, hardware=p.hardware)
        return reply

    def get_digest(self, req: session_pb2.GetDigestRequest, call: CallContext) -> session_pb2.GetDigestReply:
        sid = validate.session_id(req.session_id)
        with self.manager.use(sid, mutates=False) as s:
            return session_pb2.GetDigestReply(
                digest=engine.state_digest(s.sim), time_ns=int(s.sim.now_ns),
                events_processed=int(s.sim.kernel.events_processed), server_version=SERVER_VERSION)

    # ------------------------------------------------------------ create / get / list / close

    def create_session(self, req: session_pb2.CreateSessionRequest,
                       call: CallContext) -> session_pb2.CreateSessionReply:
        wanted = validate.optional_id(req.session_id, "session_id")
        kinds = self._event_kinds(req.event_kinds)
        overrides = self._overrides(req.overrides)
        self.manager.check_capacity()
        self.manager.check_free(wanted, "session_id")
        seed = req.seed if req.HasField("seed") else None
        try:
            doc = engine.document_from_source(req.spec, self.config.max_spec_bytes)
            spec = engine.build_spec(doc, overrides, seed, self.config.max_requests_per_session,
                                     self.config.data_dir, self.config.session_memory_bytes)
            if self.gate is not None and wanted is not None:
                self.gate.hold(wanted, lambda: False)  # tests: a CreateSession that outlives its deadline
            call.check_live()  # building a spec can take a while: nobody may be waiting any more
            sim = engine.new_simulation(spec)
        except Exception as exc:
            mapped = from_engine(exc, "spec")
            if mapped is None:
                raise
            raise mapped from exc
        session = Session(session_id="", sim=sim, spec_name=spec.name, seed=int(spec.seed),
                          router_policy=str(spec.router), event_kinds=kinds,
                          bound_to_stream=call.claim is not None and not req.keep)
        self._register(session, wanted, "session_id", call)
        return session_pb2.CreateSessionReply(session=self.session_info(session, self.client_ids(session)))

    def _register(self, session: Session, wanted: str | None, field_name: str, call: CallContext) -> None:
        self.manager.add(session, wanted, field_name, call)
        if session.bound_to_stream and call.claim is not None:
            call.claim(session.session_id)

    def get_session(self, req: session_pb2.GetSessionRequest, call: CallContext) -> session_pb2.GetSessionReply:
        """Answers at once, even while an Advance runs on the session (from what its last slice left)."""
        sid = validate.session_id(req.session_id)
        s = self.manager.get(sid)
        return session_pb2.GetSessionReply(session=self.session_info(s, self.client_ids(s)))

    def list_sessions(self, req: session_pb2.ListSessionsRequest,
                      call: CallContext) -> session_pb2.ListSessionsReply:
        return session_pb2.ListSessionsReply(sessions=[self.session_info(s) for s in self.manager.list()])

    def close_session(self, req: session_pb2.CloseSessionRequest,
                      call: CallContext) -> session_pb2.CloseSessionReply:
        """Closes at once; an Advance running on the session stops at its next slice."""
        sid = validate.session_id(req.session_id)
        call.check_live()
        s = self.manager.close(sid)
        return session_pb2.CloseSessionReply(session_id=sid, now_ns=s.now_ns)

    # ------------------------------------------------------------ fork / snapshot / restore

    def fork(self, req: session_pb2.ForkRequest, call: CallContext) -> session_pb2.ForkReply:
        sid = validate.session_id(req.session_id)
        wanted = validate.optional_id(req.new_session_id, "new_session_id")
        self.manager.check_capacity()
        self.manager.check_free(wanted, "new_session_id")
        with self.manager.use(sid, mutates=False, call=call) as src:
            child = Session(session_id="", sim=src.sim.fork(), spec_name=src.spec_name, seed=src.seed,
                            router_policy=src.router_policy, event_kinds=src.event_kinds,
                            parent_session_id=sid, requests_injected=src.requests_injected,
                            bound_to_stream=call.claim is not None and not req.keep)
        self._register(child, wanted, "new_session_id", call)
        return session_pb2.ForkReply(session=self.session_info(child, self.client_ids(child)))

    def snapshot(self, req: session_pb2.SnapshotRequest, call: CallContext) -> session_pb2.SnapshotReply:
        sid = validate.session_id(req.session_id)
        with self.manager.use(sid, mutates=False, call=call) as s:
            limit = self.config.max_snapshots_per_session
            if limit and len(s.snapshots) >= limit:
                raise exhausted("snapshots", f"session holds its limit of {limit} snapshots; drop one")
            blob = s.sim.snapshot()
            s.snapshot_counter += 1
            snap_id = f"snap-{s.snapshot_counter}"
            s.snapshots[snap_id] = (blob, int(s.sim.now_ns), s.requests_injected)
            return session_pb2.SnapshotReply(snapshot_id=snap_id, time_ns=int(s.sim.now_ns),
                                             size_bytes=len(blob))

    def restore(self, req: session_pb2.RestoreRequest, call: CallContext) -> session_pb2.RestoreReply:
        sid = validate.session_id(req.session_id)
        snap_id = validate.required_text(req.snapshot_id, "snapshot_id")
        with self.manager.use(sid, call=call) as s:
            held = s.snapshots.get(snap_id)
            if held is None:
                raise not_found("snapshot_id", f"session {sid!r} holds no snapshot {snap_id!r}")
            blob, _time_ns, injected = held
            s.sim = engine.restore_simulation(blob)
            s.requests_injected = injected
            s.broken = None
            s.refresh(client_ids=True)
            self.hooks.session_advanced(sid, s.sim)
            return session_pb2.RestoreReply(session=self.session_info(s, list(s.client_ids)))

    def drop_snapshot(self, req: session_pb2.DropSnapshotRequest,
                      call: CallContext) -> session_pb2.DropSnapshotReply:
        sid = validate.session_id(req.session_id)
        snap_id = validate.required_text(req.snapshot_id, "snapshot_id")
        with self.manager.use(sid, mutates=False, call=call) as s:
            if s.snapshots.pop(snap_id, None) is None:
                raise not_found("snapshot_id", f"session {sid!r} holds no snapshot {snap_id!r}")
        return session_pb2.DropSnapshotReply()

    # ------------------------------------------------------------ field helpers

    @staticmethod
    def _event_kinds(kinds: Any) -> frozenset[str] | None:
        if not kinds:
            return None
        if len(kinds) > MAX_EVENT_KINDS:
            raise exhausted("event_kinds", f"{len(kinds)} entries exceed the limit of {MAX_EVENT_KINDS}")
        names = set()
        for i, k in enumerate(kinds):
            validate.enum_value(common_pb2.EventKind, k, f"event_kinds[{i}]")
            names.add(wire.KIND_NAMES[k])
        return frozenset(names)

    @staticmethod
    def _overrides(overrides: Any) -> dict[str, Any]:
        if len(overrides) > MAX_OVERRIDES:
            raise exhausted("overrides", f"{len(overrides)} entries exceed the limit of {MAX_OVERRIDES}")
        out = {}
        for key in sorted(overrides):
            if not key or len(key) > 256 or any(ch.isspace() for ch in key):
                raise invalid(f"overrides[{key!r}]", "must be a dotted field path such as workload.num_requests")
            out[key] = wire.value_to_plain(overrides[key], f"overrides[{key!r}]")
        return out
