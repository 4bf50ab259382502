from envoy.service.auth.v3 import external_auth_pb2 as _external_auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TraceStep(_message.Message):
    __slots__ = ("layer", "outcome", "detail")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    layer: str
    outcome: str
    detail: str
    def __init__(self, layer: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("decision", "status", "reason", "layer", "trace", "decision_id", "identity", "operation", "check_response")
    class IdentityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CHECK_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    decision: str
    status: int
    reason: str
    layer: str
    trace: _containers.RepeatedCompositeFieldContainer[TraceStep]
    decision_id: str
    identity: _containers.ScalarMap[str, str]
    operation: str
    check_response: _external_auth_pb2.CheckResponse
    def __init__(self, decision: _Optional[str] = ..., status: _Optional[int] = ..., reason: _Optional[str] = ..., layer: _Optional[str] = ..., trace: _Optional[_Iterable[_Union[TraceStep, _Mapping]]] = ..., decision_id: _Optional[str] = ..., identity: _Optional[_Mapping[str, str]] = ..., operation: _Optional[str] = ..., check_response: _Optional[_Union[_external_auth_pb2.CheckResponse, _Mapping]] = ...) -> None: ...
