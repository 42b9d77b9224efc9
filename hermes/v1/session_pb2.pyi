from google.protobuf import struct_pb2 as _struct_pb2
from hermes.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpecSource(_message.Message):
    __slots__ = ("document", "yaml", "preset")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    document: _struct_pb2.Struct
    yaml: str
    preset: str
    def __init__(self, document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., yaml: _Optional[str] = ..., preset: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("spec", "overrides", "seed", "session_id", "event_kinds", "keep")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_KINDS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    spec: SpecSource
    overrides: _containers.MessageMap[str, _struct_pb2.Value]
    seed: int
    session_id: str
    event_kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.EventKind]
    keep: bool
    def __init__(self, spec: _Optional[_Union[SpecSource, _Mapping]] = ..., overrides: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., seed: _Optional[int] = ..., session_id: _Optional[str] = ..., event_kinds: _Optional[_Iterable[_Union[_common_pb2.EventKind, str]]] = ..., keep: _Optional[bool] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "spec_name", "seed", "router_policy", "now_ns", "requests_injected", "pending_decisions", "snapshots", "client_ids", "parent_session_id", "event_kinds", "bound_to_stream")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_NAME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ROUTER_POLICY_FIELD_NUMBER: _ClassVar[int]
    NOW_NS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_INJECTED_FIELD_NUMBER: _ClassVar[int]
    PENDING_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    PARENT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_KINDS_FIELD_NUMBER: _ClassVar[int]
    BOUND_TO_STREAM_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec_name: str
    seed: int
    router_policy: str
    now_ns: int
    requests_injected: int
    pending_decisions: int
    snapshots: int
    client_ids: _containers.RepeatedScalarFieldContainer[str]
    parent_session_id: str
    event_kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.EventKind]
    bound_to_stream: bool
    def __init__(self, session_id: _Optional[str] = ..., spec_name: _Optional[str] = ..., seed: _Optional[int] = ..., router_policy: _Optional[str] = ..., now_ns: _Optional[int] = ..., requests_injected: _Optional[int] = ..., pending_decisions: _Optional[int] = ..., snapshots: _Optional[int] = ..., client_ids: _Optional[_Iterable[str]] = ..., parent_session_id: _Optional[str] = ..., event_kinds: _Optional[_Iterable[_Union[_common_pb2.EventKind, str]]] = ..., bound_to_stream: _Optional[bool] = ...) -> None: ...

class CreateSessionReply(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionReply(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsReply(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionReply(_message.Message):
    __slots__ = ("session_id", "now_ns")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NOW_NS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    now_ns: int
    def __init__(self, session_id: _Optional[str] = ..., now_ns: _Optional[int] = ...) -> None: ...

class ForkRequest(_message.Message):
    __slots__ = ("session_id", "new_session_id", "keep")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    new_session_id: str
    keep: bool
    def __init__(self, session_id: _Optional[str] = ..., new_session_id: _Optional[str] = ..., keep: _Optional[bool] = ...) -> None: ...

class ForkReply(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SnapshotReply(_message.Message):
    __slots__ = ("snapshot_id", "time_ns", "size_bytes")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    time_ns: int
    size_bytes: int
    def __init__(self, snapshot_id: _Optional[str] = ..., time_ns: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("session_id", "snapshot_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    snapshot_id: str
    def __init__(self, session_id: _Optional[str] = ..., snapshot_id: _Optional[str] = ...) -> None: ...

class RestoreReply(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class DropSnapshotRequest(_message.Message):
    __slots__ = ("session_id", "snapshot_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    snapshot_id: str
    def __init__(self, session_id: _Optional[str] = ..., snapshot_id: _Optional[str] = ...) -> None: ...

class DropSnapshotReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PresetInfo(_message.Message):
    __slots__ = ("name", "description", "models", "hardware")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    models: _containers.RepeatedScalarFieldContainer[str]
    hardware: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., hardware: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_sessions", "max_requests_per_session", "max_message_bytes", "max_events_per_reply", "max_snapshots_per_session", "session_idle_timeout_s", "max_call_seconds", "session_memory_bytes", "max_spec_bytes", "max_request_bytes")
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_REPLY_FIELD_NUMBER: _ClassVar[int]
    MAX_SNAPSHOTS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEC_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_sessions: int
    max_requests_per_session: int
    max_message_bytes: int
    max_events_per_reply: int
    max_snapshots_per_session: int
    session_idle_timeout_s: int
    max_call_seconds: float
    session_memory_bytes: int
    max_spec_bytes: int
    max_request_bytes: int
    def __init__(self, max_sessions: _Optional[int] = ..., max_requests_per_session: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_events_per_reply: _Optional[int] = ..., max_snapshots_per_session: _Optional[int] = ..., session_idle_timeout_s: _Optional[int] = ..., max_call_seconds: _Optional[float] = ..., session_memory_bytes: _Optional[int] = ..., max_spec_bytes: _Optional[int] = ..., max_request_bytes: _Optional[int] = ...) -> None: ...

class GetInfoReply(_message.Message):
    __slots__ = ("api_version", "server_version", "capabilities", "presets", "limits", "router_policies", "shard_id", "sessions", "busy_workers", "accepting_sessions")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ROUTER_POLICIES_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTING_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    server_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    presets: _containers.RepeatedCompositeFieldContainer[PresetInfo]
    limits: Limits
    router_policies: _containers.RepeatedScalarFieldContainer[str]
    shard_id: str
    sessions: int
    busy_workers: int
    accepting_sessions: bool
    def __init__(self, api_version: _Optional[str] = ..., server_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., presets: _Optional[_Iterable[_Union[PresetInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., router_policies: _Optional[_Iterable[str]] = ..., shard_id: _Optional[str] = ..., sessions: _Optional[int] = ..., busy_workers: _Optional[int] = ..., accepting_sessions: _Optional[bool] = ...) -> None: ...

class GetDigestRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetDigestReply(_message.Message):
    __slots__ = ("digest", "time_ns", "events_processed", "server_version")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    digest: str
    time_ns: int
    events_processed: int
    server_version: str
    def __init__(self, digest: _Optional[str] = ..., time_ns: _Optional[int] = ..., events_processed: _Optional[int] = ..., server_version: _Optional[str] = ...) -> None: ...
