from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_TARGET_REACHED: _ClassVar[StopReason]
    STOP_REASON_DECISION_NEEDED: _ClassVar[StopReason]
    STOP_REASON_WAKEUP: _ClassVar[StopReason]
    STOP_REASON_IDLE: _ClassVar[StopReason]
    STOP_REASON_EVENT_BOUND: _ClassVar[StopReason]
    STOP_REASON_INTERRUPTED: _ClassVar[StopReason]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_ARRIVAL: _ClassVar[EventKind]
    EVENT_KIND_ROUTED: _ClassVar[EventKind]
    EVENT_KIND_FIRST_TOKEN: _ClassVar[EventKind]
    EVENT_KIND_COMPLETED: _ClassVar[EventKind]
    EVENT_KIND_DROPPED: _ClassVar[EventKind]
    EVENT_KIND_PREEMPTED: _ClassVar[EventKind]
    EVENT_KIND_DECISION: _ClassVar[EventKind]
    EVENT_KIND_WAKEUP: _ClassVar[EventKind]
    EVENT_KIND_CLUSTER: _ClassVar[EventKind]
    EVENT_KIND_ABORTED: _ClassVar[EventKind]

class DecisionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_ACTION_UNSPECIFIED: _ClassVar[DecisionAction]
    DECISION_ACTION_ROUTE: _ClassVar[DecisionAction]
    DECISION_ACTION_DEFER: _ClassVar[DecisionAction]
    DECISION_ACTION_DROP: _ClassVar[DecisionAction]

class ClusterAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLUSTER_ACTION_UNSPECIFIED: _ClassVar[ClusterAction]
    CLUSTER_ACTION_ADD: _ClassVar[ClusterAction]
    CLUSTER_ACTION_DRAIN: _ClassVar[ClusterAction]
    CLUSTER_ACTION_REMOVE: _ClassVar[ClusterAction]
    CLUSTER_ACTION_FAIL: _ClassVar[ClusterAction]
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_TARGET_REACHED: StopReason
STOP_REASON_DECISION_NEEDED: StopReason
STOP_REASON_WAKEUP: StopReason
STOP_REASON_IDLE: StopReason
STOP_REASON_EVENT_BOUND: StopReason
STOP_REASON_INTERRUPTED: StopReason
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_ARRIVAL: EventKind
EVENT_KIND_ROUTED: EventKind
EVENT_KIND_FIRST_TOKEN: EventKind
EVENT_KIND_COMPLETED: EventKind
EVENT_KIND_DROPPED: EventKind
EVENT_KIND_PREEMPTED: EventKind
EVENT_KIND_DECISION: EventKind
EVENT_KIND_WAKEUP: EventKind
EVENT_KIND_CLUSTER: EventKind
EVENT_KIND_ABORTED: EventKind
DECISION_ACTION_UNSPECIFIED: DecisionAction
DECISION_ACTION_ROUTE: DecisionAction
DECISION_ACTION_DEFER: DecisionAction
DECISION_ACTION_DROP: DecisionAction
CLUSTER_ACTION_UNSPECIFIED: ClusterAction
CLUSTER_ACTION_ADD: ClusterAction
CLUSTER_ACTION_DRAIN: ClusterAction
CLUSTER_ACTION_REMOVE: ClusterAction
CLUSTER_ACTION_FAIL: ClusterAction

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RequestResult(_message.Message):
    __slots__ = ("prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s", "prefill_s", "decode_s", "preemptions", "model")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    E2E_S_FIELD_NUMBER: _ClassVar[int]
    QUEUE_S_FIELD_NUMBER: _ClassVar[int]
    PREFILL_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    tpot_s: float
    e2e_s: float
    queue_s: float
    prefill_s: float
    decode_s: float
    preemptions: int
    model: str
    def __init__(self, prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., ttft_s: _Optional[float] = ..., tpot_s: _Optional[float] = ..., e2e_s: _Optional[float] = ..., queue_s: _Optional[float] = ..., prefill_s: _Optional[float] = ..., decode_s: _Optional[float] = ..., preemptions: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("time_ns", "kind", "request_id", "client_id", "result", "reason", "tag", "decision_id", "stage", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    kind: EventKind
    request_id: str
    client_id: str
    result: RequestResult
    reason: str
    tag: str
    decision_id: str
    stage: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, time_ns: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., request_id: _Optional[str] = ..., client_id: _Optional[str] = ..., result: _Optional[_Union[RequestResult, _Mapping]] = ..., reason: _Optional[str] = ..., tag: _Optional[str] = ..., decision_id: _Optional[str] = ..., stage: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "request_id", "stage_index", "stage_kind", "model", "candidates", "time_ns", "prompt_tokens", "output_tokens", "prefix_key")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    STAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_KEY_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    request_id: str
    stage_index: int
    stage_kind: str
    model: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    time_ns: int
    prompt_tokens: int
    output_tokens: int
    prefix_key: str
    def __init__(self, decision_id: _Optional[str] = ..., request_id: _Optional[str] = ..., stage_index: _Optional[int] = ..., stage_kind: _Optional[str] = ..., model: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., time_ns: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., prefix_key: _Optional[str] = ...) -> None: ...

class BatchRequestView(_message.Message):
    __slots__ = ("request_id", "prompt_tokens", "output_tokens", "prefill_tokens", "computed_tokens", "generated_tokens", "prefix_key", "arrival_ns", "decoding", "sequences", "kv_blocks", "next_decode_blocks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_KEY_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_NS_FIELD_NUMBER: _ClassVar[int]
    DECODING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    KV_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_DECODE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt_tokens: int
    output_tokens: int
    prefill_tokens: int
    computed_tokens: int
    generated_tokens: int
    prefix_key: str
    arrival_ns: int
    decoding: bool
    sequences: int
    kv_blocks: int
    next_decode_blocks: int
    def __init__(self, request_id: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., prefill_tokens: _Optional[int] = ..., computed_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., prefix_key: _Optional[str] = ..., arrival_ns: _Optional[int] = ..., decoding: _Optional[bool] = ..., sequences: _Optional[int] = ..., kv_blocks: _Optional[int] = ..., next_decode_blocks: _Optional[int] = ...) -> None: ...

class BatchDecision(_message.Message):
    __slots__ = ("decision_id", "client_id", "time_ns", "token_budget", "max_seqs", "block_size", "free_blocks", "total_blocks", "waiting", "running")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FREE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    client_id: str
    time_ns: int
    token_budget: int
    max_seqs: int
    block_size: int
    free_blocks: int
    total_blocks: int
    waiting: _containers.RepeatedCompositeFieldContainer[BatchRequestView]
    running: _containers.RepeatedCompositeFieldContainer[BatchRequestView]
    def __init__(self, decision_id: _Optional[str] = ..., client_id: _Optional[str] = ..., time_ns: _Optional[int] = ..., token_budget: _Optional[int] = ..., max_seqs: _Optional[int] = ..., block_size: _Optional[int] = ..., free_blocks: _Optional[int] = ..., total_blocks: _Optional[int] = ..., waiting: _Optional[_Iterable[_Union[BatchRequestView, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[BatchRequestView, _Mapping]]] = ...) -> None: ...

class RequestInput(_message.Message):
    __slots__ = ("arrival_ns", "prompt_tokens", "output_tokens", "model", "pipeline", "request_id", "prefix_key")
    ARRIVAL_NS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_KEY_FIELD_NUMBER: _ClassVar[int]
    arrival_ns: int
    prompt_tokens: int
    output_tokens: int
    model: str
    pipeline: str
    request_id: str
    prefix_key: str
    def __init__(self, arrival_ns: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., model: _Optional[str] = ..., pipeline: _Optional[str] = ..., request_id: _Optional[str] = ..., prefix_key: _Optional[str] = ...) -> None: ...

class ClientState(_message.Message):
    __slots__ = ("id", "hardware", "model", "role", "status", "num_waiting", "num_running", "kv_used_blocks", "kv_total_blocks", "kv_usage", "running_tokens", "waiting_prompt_tokens", "est_step_s", "prompt_tokens_total", "generation_tokens_total", "preemptions_total", "requests_completed_total", "busy_s", "energy_j")
    ID_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NUM_WAITING_FIELD_NUMBER: _ClassVar[int]
    NUM_RUNNING_FIELD_NUMBER: _ClassVar[int]
    KV_USED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    KV_TOTAL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    KV_USAGE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WAITING_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EST_STEP_S_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_COMPLETED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BUSY_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    id: str
    hardware: str
    model: str
    role: str
    status: str
    num_waiting: int
    num_running: int
    kv_used_blocks: int
    kv_total_blocks: int
    kv_usage: float
    running_tokens: int
    waiting_prompt_tokens: int
    est_step_s: float
    prompt_tokens_total: int
    generation_tokens_total: int
    preemptions_total: int
    requests_completed_total: int
    busy_s: float
    energy_j: float
    def __init__(self, id: _Optional[str] = ..., hardware: _Optional[str] = ..., model: _Optional[str] = ..., role: _Optional[str] = ..., status: _Optional[str] = ..., num_waiting: _Optional[int] = ..., num_running: _Optional[int] = ..., kv_used_blocks: _Optional[int] = ..., kv_total_blocks: _Optional[int] = ..., kv_usage: _Optional[float] = ..., running_tokens: _Optional[int] = ..., waiting_prompt_tokens: _Optional[int] = ..., est_step_s: _Optional[float] = ..., prompt_tokens_total: _Optional[int] = ..., generation_tokens_total: _Optional[int] = ..., preemptions_total: _Optional[int] = ..., requests_completed_total: _Optional[int] = ..., busy_s: _Optional[float] = ..., energy_j: _Optional[float] = ...) -> None: ...

class LinkState(_message.Message):
    __slots__ = ("id", "bytes_moved", "busy_ns", "utilization", "bandwidth_gbs", "active")
    ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_MOVED_FIELD_NUMBER: _ClassVar[int]
    BUSY_NS_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_GBS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    bytes_moved: float
    busy_ns: int
    utilization: float
    bandwidth_gbs: float
    active: int
    def __init__(self, id: _Optional[str] = ..., bytes_moved: _Optional[float] = ..., busy_ns: _Optional[int] = ..., utilization: _Optional[float] = ..., bandwidth_gbs: _Optional[float] = ..., active: _Optional[int] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("now_ns", "clients", "pending_decisions", "in_flight", "injected", "completed", "dropped", "links", "aborted")
    NOW_NS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    INJECTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    now_ns: int
    clients: _containers.RepeatedCompositeFieldContainer[ClientState]
    pending_decisions: int
    in_flight: int
    injected: int
    completed: int
    dropped: int
    links: _containers.RepeatedCompositeFieldContainer[LinkState]
    aborted: int
    def __init__(self, now_ns: _Optional[int] = ..., clients: _Optional[_Iterable[_Union[ClientState, _Mapping]]] = ..., pending_decisions: _Optional[int] = ..., in_flight: _Optional[int] = ..., injected: _Optional[int] = ..., completed: _Optional[int] = ..., dropped: _Optional[int] = ..., links: _Optional[_Iterable[_Union[LinkState, _Mapping]]] = ..., aborted: _Optional[int] = ...) -> None: ...
