from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrefillChunk(_message.Message):
    __slots__ = ("cached_tokens", "new_tokens")
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    cached_tokens: int
    new_tokens: int
    def __init__(self, cached_tokens: _Optional[int] = ..., new_tokens: _Optional[int] = ...) -> None: ...

class EstimateStepRequest(_message.Message):
    __slots__ = ("client", "prefills", "decode_context_tokens")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PREFILLS_FIELD_NUMBER: _ClassVar[int]
    DECODE_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    client: _struct_pb2.Struct
    prefills: _containers.RepeatedCompositeFieldContainer[PrefillChunk]
    decode_context_tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, client: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., prefills: _Optional[_Iterable[_Union[PrefillChunk, _Mapping]]] = ..., decode_context_tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class EstimateStepReply(_message.Message):
    __slots__ = ("time_s", "compute_s", "memory_s", "comm_s", "energy_j", "compute_bound", "kv_capacity_tokens")
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_S_FIELD_NUMBER: _ClassVar[int]
    COMM_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_BOUND_FIELD_NUMBER: _ClassVar[int]
    KV_CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    time_s: float
    compute_s: float
    memory_s: float
    comm_s: float
    energy_j: float
    compute_bound: bool
    kv_capacity_tokens: int
    def __init__(self, time_s: _Optional[float] = ..., compute_s: _Optional[float] = ..., memory_s: _Optional[float] = ..., comm_s: _Optional[float] = ..., energy_j: _Optional[float] = ..., compute_bound: _Optional[bool] = ..., kv_capacity_tokens: _Optional[int] = ...) -> None: ...
