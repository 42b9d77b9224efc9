from google.protobuf import struct_pb2 as _struct_pb2
from hermes.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InjectRequest(_message.Message):
    __slots__ = ("session_id", "requests")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    requests: _containers.RepeatedCompositeFieldContainer[_common_pb2.RequestInput]
    def __init__(self, session_id: _Optional[str] = ..., requests: _Optional[_Iterable[_Union[_common_pb2.RequestInput, _Mapping]]] = ...) -> None: ...

class InjectReply(_message.Message):
    __slots__ = ("request_ids",)
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("session_id", "request_ids")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AbortReply(_message.Message):
    __slots__ = ("aborted", "not_found")
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    aborted: _containers.RepeatedScalarFieldContainer[str]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, aborted: _Optional[_Iterable[str]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class AdvanceRequest(_message.Message):
    __slots__ = ("session_id", "until_ns", "by_ns", "next_event", "max_events")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_NS_FIELD_NUMBER: _ClassVar[int]
    BY_NS_FIELD_NUMBER: _ClassVar[int]
    NEXT_EVENT_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    until_ns: int
    by_ns: int
    next_event: bool
    max_events: int
    def __init__(self, session_id: _Optional[str] = ..., until_ns: _Optional[int] = ..., by_ns: _Optional[int] = ..., next_event: _Optional[bool] = ..., max_events: _Optional[int] = ...) -> None: ...

class AdvanceReply(_message.Message):
    __slots__ = ("time_ns", "reason", "events", "decisions", "events_processed", "batch_decisions")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    BATCH_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    reason: _common_pb2.StopReason
    events: _containers.RepeatedCompositeFieldContainer[_common_pb2.Event]
    decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Decision]
    events_processed: int
    batch_decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.BatchDecision]
    def __init__(self, time_ns: _Optional[int] = ..., reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., events: _Optional[_Iterable[_Union[_common_pb2.Event, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[_common_pb2.Decision, _Mapping]]] = ..., events_processed: _Optional[int] = ..., batch_decisions: _Optional[_Iterable[_Union[_common_pb2.BatchDecision, _Mapping]]] = ...) -> None: ...

class GetDecisionsRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetDecisionsReply(_message.Message):
    __slots__ = ("decisions", "batch_decisions")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    BATCH_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Decision]
    batch_decisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.BatchDecision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[_common_pb2.Decision, _Mapping]]] = ..., batch_decisions: _Optional[_Iterable[_Union[_common_pb2.BatchDecision, _Mapping]]] = ...) -> None: ...

class DecisionAnswer(_message.Message):
    __slots__ = ("decision_id", "action", "client_id", "retry_after_ns")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_NS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    action: _common_pb2.DecisionAction
    client_id: str
    retry_after_ns: int
    def __init__(self, decision_id: _Optional[str] = ..., action: _Optional[_Union[_common_pb2.DecisionAction, str]] = ..., client_id: _Optional[str] = ..., retry_after_ns: _Optional[int] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("request_id", "tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tokens: int
    def __init__(self, request_id: _Optional[str] = ..., tokens: _Optional[int] = ...) -> None: ...

class BatchAnswer(_message.Message):
    __slots__ = ("decision_id", "schedule", "preempt", "repeat_decodes")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    REPEAT_DECODES_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    schedule: _containers.RepeatedCompositeFieldContainer[BatchItem]
    preempt: _containers.RepeatedScalarFieldContainer[str]
    repeat_decodes: bool
    def __init__(self, decision_id: _Optional[str] = ..., schedule: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., preempt: _Optional[_Iterable[str]] = ..., repeat_decodes: _Optional[bool] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("session_id", "answers", "batch_answers")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    answers: _containers.RepeatedCompositeFieldContainer[DecisionAnswer]
    batch_answers: _containers.RepeatedCompositeFieldContainer[BatchAnswer]
    def __init__(self, session_id: _Optional[str] = ..., answers: _Optional[_Iterable[_Union[DecisionAnswer, _Mapping]]] = ..., batch_answers: _Optional[_Iterable[_Union[BatchAnswer, _Mapping]]] = ...) -> None: ...

class DecideReply(_message.Message):
    __slots__ = ("pending_decisions",)
    PENDING_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    pending_decisions: int
    def __init__(self, pending_decisions: _Optional[int] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetStateReply(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.ClusterState
    def __init__(self, state: _Optional[_Union[_common_pb2.ClusterState, _Mapping]] = ...) -> None: ...

class AddWakeupRequest(_message.Message):
    __slots__ = ("session_id", "time_ns", "tag")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    time_ns: int
    tag: str
    def __init__(self, session_id: _Optional[str] = ..., time_ns: _Optional[int] = ..., tag: _Optional[str] = ...) -> None: ...

class AddWakeupReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChangeClusterRequest(_message.Message):
    __slots__ = ("session_id", "time_ns", "action", "client_id", "client")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    time_ns: int
    action: _common_pb2.ClusterAction
    client_id: str
    client: _struct_pb2.Struct
    def __init__(self, session_id: _Optional[str] = ..., time_ns: _Optional[int] = ..., action: _Optional[_Union[_common_pb2.ClusterAction, str]] = ..., client_id: _Optional[str] = ..., client: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ChangeClusterReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSummaryRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSummaryReply(_message.Message):
    __slots__ = ("summary_json", "summary", "now_ns")
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    NOW_NS_FIELD_NUMBER: _ClassVar[int]
    summary_json: str
    summary: _struct_pb2.Struct
    now_ns: int
    def __init__(self, summary_json: _Optional[str] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., now_ns: _Optional[int] = ...) -> None: ...
