from google.protobuf import empty_pb2 as _empty_pb2
from . import common_pb2 as _common_pb2
from . import processor_pb2 as _processor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Route(_message.Message):
    __slots__ = ("user", "host", "port", "advertised_host", "advertised_port", "transport", "registered_on", "expires", "session_count", "edge_port_ref", "listening_points", "localnets", "external_addrs", "labels", "contact_uri", "instance_id", "reg_id", "q_value", "call_id", "cseq", "path")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ADVERTISED_HOST_FIELD_NUMBER: _ClassVar[int]
    ADVERTISED_PORT_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    SESSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    EDGE_PORT_REF_FIELD_NUMBER: _ClassVar[int]
    LISTENING_POINTS_FIELD_NUMBER: _ClassVar[int]
    LOCALNETS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ADDRS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTACT_URI_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REG_ID_FIELD_NUMBER: _ClassVar[int]
    Q_VALUE_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CSEQ_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    user: str
    host: str
    port: str
    advertised_host: str
    advertised_port: str
    transport: _common_pb2.Transport
    registered_on: int
    expires: int
    session_count: int
    edge_port_ref: str
    listening_points: _containers.RepeatedCompositeFieldContainer[_processor_pb2.NetInterface]
    localnets: _containers.RepeatedScalarFieldContainer[str]
    external_addrs: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    contact_uri: str
    instance_id: str
    reg_id: int
    q_value: float
    call_id: str
    cseq: int
    path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[str] = ..., advertised_host: _Optional[str] = ..., advertised_port: _Optional[str] = ..., transport: _Optional[_Union[_common_pb2.Transport, str]] = ..., registered_on: _Optional[int] = ..., expires: _Optional[int] = ..., session_count: _Optional[int] = ..., edge_port_ref: _Optional[str] = ..., listening_points: _Optional[_Iterable[_Union[_processor_pb2.NetInterface, _Mapping]]] = ..., localnets: _Optional[_Iterable[str]] = ..., external_addrs: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., contact_uri: _Optional[str] = ..., instance_id: _Optional[str] = ..., reg_id: _Optional[int] = ..., q_value: _Optional[float] = ..., call_id: _Optional[str] = ..., cseq: _Optional[int] = ..., path: _Optional[_Iterable[str]] = ...) -> None: ...

class AddRouteRequest(_message.Message):
    __slots__ = ("aor", "route", "max_contacts")
    AOR_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    aor: str
    route: Route
    max_contacts: int
    def __init__(self, aor: _Optional[str] = ..., route: _Optional[_Union[Route, _Mapping]] = ..., max_contacts: _Optional[int] = ...) -> None: ...

class FindRoutesRequest(_message.Message):
    __slots__ = ("call_id", "aor", "session_affinity_ref", "backend", "labels", "avoid_contact_uris")
    class Backend(_message.Message):
        __slots__ = ("ref", "with_session_affinity", "algorithm")
        class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            ROUND_ROBIN: _ClassVar[FindRoutesRequest.Backend.Algorithm]
            LEAST_SESSIONS: _ClassVar[FindRoutesRequest.Backend.Algorithm]
        ROUND_ROBIN: FindRoutesRequest.Backend.Algorithm
        LEAST_SESSIONS: FindRoutesRequest.Backend.Algorithm
        REF_FIELD_NUMBER: _ClassVar[int]
        WITH_SESSION_AFFINITY_FIELD_NUMBER: _ClassVar[int]
        ALGORITHM_FIELD_NUMBER: _ClassVar[int]
        ref: str
        with_session_affinity: bool
        algorithm: FindRoutesRequest.Backend.Algorithm
        def __init__(self, ref: _Optional[str] = ..., with_session_affinity: _Optional[bool] = ..., algorithm: _Optional[_Union[FindRoutesRequest.Backend.Algorithm, str]] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    AOR_FIELD_NUMBER: _ClassVar[int]
    SESSION_AFFINITY_REF_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AVOID_CONTACT_URIS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    aor: str
    session_affinity_ref: str
    backend: FindRoutesRequest.Backend
    labels: _containers.ScalarMap[str, str]
    avoid_contact_uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, call_id: _Optional[str] = ..., aor: _Optional[str] = ..., session_affinity_ref: _Optional[str] = ..., backend: _Optional[_Union[FindRoutesRequest.Backend, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., avoid_contact_uris: _Optional[_Iterable[str]] = ...) -> None: ...

class FindRoutesResponse(_message.Message):
    __slots__ = ("routes",)
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class RemoveRoutesRequest(_message.Message):
    __slots__ = ("aor", "contact_uris")
    AOR_FIELD_NUMBER: _ClassVar[int]
    CONTACT_URIS_FIELD_NUMBER: _ClassVar[int]
    aor: str
    contact_uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, aor: _Optional[str] = ..., contact_uris: _Optional[_Iterable[str]] = ...) -> None: ...
