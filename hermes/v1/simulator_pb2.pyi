from hermes.v1 import common_pb2 as _common_pb2
from hermes.v1 import control_pb2 as _control_pb2
from hermes.v1 import estimate_pb2 as _estimate_pb2
from hermes.v1 import session_pb2 as _session_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("id", "get_info", "create_session", "get_session", "list_sessions", "close_session", "fork", "snapshot", "restore", "drop_snapshot", "inject", "advance", "get_decisions", "decide", "get_state", "add_wakeup", "change_cluster", "get_summary", "abort", "estimate_step", "get_digest")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_INFO_FIELD_NUMBER: _ClassVar[int]
    CREATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    GET_SESSION_FIELD_NUMBER: _ClassVar[int]
    LIST_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_SESSION_FIELD_NUMBER: _ClassVar[int]
    FORK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    DROP_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    INJECT_FIELD_NUMBER: _ClassVar[int]
    ADVANCE_FIELD_NUMBER: _ClassVar[int]
    GET_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    GET_STATE_FIELD_NUMBER: _ClassVar[int]
    ADD_WAKEUP_FIELD_NUMBER: _ClassVar[int]
    CHANGE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    GET_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_STEP_FIELD_NUMBER: _ClassVar[int]
    GET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    id: int
    get_info: _session_pb2.GetInfoRequest
    create_session: _session_pb2.CreateSessionRequest
    get_session: _session_pb2.GetSessionRequest
    list_sessions: _session_pb2.ListSessionsRequest
    close_session: _session_pb2.CloseSessionRequest
    fork: _session_pb2.ForkRequest
    snapshot: _session_pb2.SnapshotRequest
    restore: _session_pb2.RestoreRequest
    drop_snapshot: _session_pb2.DropSnapshotRequest
    inject: _control_pb2.InjectRequest
    advance: _control_pb2.AdvanceRequest
    get_decisions: _control_pb2.GetDecisionsRequest
    decide: _control_pb2.DecideRequest
    get_state: _control_pb2.GetStateRequest
    add_wakeup: _control_pb2.AddWakeupRequest
    change_cluster: _control_pb2.ChangeClusterRequest
    get_summary: _control_pb2.GetSummaryRequest
    abort: _control_pb2.AbortRequest
    estimate_step: _estimate_pb2.EstimateStepRequest
    get_digest: _session_pb2.GetDigestRequest
    def __init__(self, id: _Optional[int] = ..., get_info: _Optional[_Union[_session_pb2.GetInfoRequest, _Mapping]] = ..., create_session: _Optional[_Union[_session_pb2.CreateSessionRequest, _Mapping]] = ..., get_session: _Optional[_Union[_session_pb2.GetSessionRequest, _Mapping]] = ..., list_sessions: _Optional[_Union[_session_pb2.ListSessionsRequest, _Mapping]] = ..., close_session: _Optional[_Union[_session_pb2.CloseSessionRequest, _Mapping]] = ..., fork: _Optional[_Union[_session_pb2.ForkRequest, _Mapping]] = ..., snapshot: _Optional[_Union[_session_pb2.SnapshotRequest, _Mapping]] = ..., restore: _Optional[_Union[_session_pb2.RestoreRequest, _Mapping]] = ..., drop_snapshot: _Optional[_Union[_session_pb2.DropSnapshotRequest, _Mapping]] = ..., inject: _Optional[_Union[_control_pb2.InjectRequest, _Mapping]] = ..., advance: _Optional[_Union[_control_pb2.AdvanceRequest, _Mapping]] = ..., get_decisions: _Optional[_Union[_control_pb2.GetDecisionsRequest, _Mapping]] = ..., decide: _Optional[_Union[_control_pb2.DecideRequest, _Mapping]] = ..., get_state: _Optional[_Union[_control_pb2.GetStateRequest, _Mapping]] = ..., add_wakeup: _Optional[_Union[_control_pb2.AddWakeupRequest, _Mapping]] = ..., change_cluster: _Optional[_Union[_control_pb2.ChangeClusterRequest, _Mapping]] = ..., get_summary: _Optional[_Union[_control_pb2.GetSummaryRequest, _Mapping]] = ..., abort: _Optional[_Union[_control_pb2.AbortRequest, _Mapping]] = ..., estimate_step: _Optional[_Union[_estimate_pb2.EstimateStepRequest, _Mapping]] = ..., get_digest: _Optional[_Union[_session_pb2.GetDigestRequest, _Mapping]] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("id", "status", "get_info", "create_session", "get_session", "list_sessions", "close_session", "fork", "snapshot", "restore", "drop_snapshot", "inject", "advance", "get_decisions", "decide", "get_state", "add_wakeup", "change_cluster", "get_summary", "abort", "estimate_step", "get_digest")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GET_INFO_FIELD_NUMBER: _ClassVar[int]
    CREATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    GET_SESSION_FIELD_NUMBER: _ClassVar[int]
    LIST_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_SESSION_FIELD_NUMBER: _ClassVar[int]
    FORK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    DROP_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    INJECT_FIELD_NUMBER: _ClassVar[int]
    ADVANCE_FIELD_NUMBER: _ClassVar[int]
    GET_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    GET_STATE_FIELD_NUMBER: _ClassVar[int]
    ADD_WAKEUP_FIELD_NUMBER: _ClassVar[int]
    CHANGE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    GET_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_STEP_FIELD_NUMBER: _ClassVar[int]
    GET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: _common_pb2.Status
    get_info: _session_pb2.GetInfoReply
    create_session: _session_pb2.CreateSessionReply
    get_session: _session_pb2.GetSessionReply
    list_sessions: _session_pb2.ListSessionsReply
    close_session: _session_pb2.CloseSessionReply
    fork: _session_pb2.ForkReply
    snapshot: _session_pb2.SnapshotReply
    restore: _session_pb2.RestoreReply
    drop_snapshot: _session_pb2.DropSnapshotReply
    inject: _control_pb2.InjectReply
    advance: _control_pb2.AdvanceReply
    get_decisions: _control_pb2.GetDecisionsReply
    decide: _control_pb2.DecideReply
    get_state: _control_pb2.GetStateReply
    add_wakeup: _control_pb2.AddWakeupReply
    change_cluster: _control_pb2.ChangeClusterReply
    get_summary: _control_pb2.GetSummaryReply
    abort: _control_pb2.AbortReply
    estimate_step: _estimate_pb2.EstimateStepReply
    get_digest: _session_pb2.GetDigestReply
    def __init__(self, id: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., get_info: _Optional[_Union[_session_pb2.GetInfoReply, _Mapping]] = ..., create_session: _Optional[_Union[_session_pb2.CreateSessionReply, _Mapping]] = ..., get_session: _Optional[_Union[_session_pb2.GetSessionReply, _Mapping]] = ..., list_sessions: _Optional[_Union[_session_pb2.ListSessionsReply, _Mapping]] = ..., close_session: _Optional[_Union[_session_pb2.CloseSessionReply, _Mapping]] = ..., fork: _Optional[_Union[_session_pb2.ForkReply, _Mapping]] = ..., snapshot: _Optional[_Union[_session_pb2.SnapshotReply, _Mapping]] = ..., restore: _Optional[_Union[_session_pb2.RestoreReply, _Mapping]] = ..., drop_snapshot: _Optional[_Union[_session_pb2.DropSnapshotReply, _Mapping]] = ..., inject: _Optional[_Union[_control_pb2.InjectReply, _Mapping]] = ..., advance: _Optional[_Union[_control_pb2.AdvanceReply, _Mapping]] = ..., get_decisions: _Optional[_Union[_control_pb2.GetDecisionsReply, _Mapping]] = ..., decide: _Optional[_Union[_control_pb2.DecideReply, _Mapping]] = ..., get_state: _Optional[_Union[_control_pb2.GetStateReply, _Mapping]] = ..., add_wakeup: _Optional[_Union[_control_pb2.AddWakeupReply, _Mapping]] = ..., change_cluster: _Optional[_Union[_control_pb2.ChangeClusterReply, _Mapping]] = ..., get_summary: _Optional[_Union[_control_pb2.GetSummaryReply, _Mapping]] = ..., abort: _Optional[_Union[_control_pb2.AbortReply, _Mapping]] = ..., estimate_step: _Optional[_Union[_estimate_pb2.EstimateStepReply, _Mapping]] = ..., get_digest: _Optional[_Union[_session_pb2.GetDigestReply, _Mapping]] = ...) -> None: ...
