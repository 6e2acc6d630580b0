from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from . import acl_pb2 as _acl_pb2
from . import credentials_pb2 as _credentials_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadBalancingAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNSPECIFIED: _ClassVar[LoadBalancingAlgorithm]
    ROUND_ROBIN: _ClassVar[LoadBalancingAlgorithm]
    LEAST_SESSIONS: _ClassVar[LoadBalancingAlgorithm]
UNSPECIFIED: LoadBalancingAlgorithm
ROUND_ROBIN: LoadBalancingAlgorithm
LEAST_SESSIONS: LoadBalancingAlgorithm

class Peer(_message.Message):
    __slots__ = ("api_version", "ref", "name", "username", "aor", "contact_addr", "balancing_algorithm", "with_session_affinity", "enabled", "created_at", "updated_at", "access_control_list", "credentials", "extended", "max_contacts", "expires")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    AOR_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ADDR_FIELD_NUMBER: _ClassVar[int]
    BALANCING_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WITH_SESSION_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    ref: str
    name: str
    username: str
    aor: str
    contact_addr: str
    balancing_algorithm: LoadBalancingAlgorithm
    with_session_affinity: bool
    enabled: bool
    created_at: int
    updated_at: int
    access_control_list: _acl_pb2.AccessControlList
    credentials: _credentials_pb2.Credentials
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, api_version: _Optional[str] = ..., ref: _Optional[str] = ..., name: _Optional[str] = ..., username: _Optional[str] = ..., aor: _Optional[str] = ..., contact_addr: _Optional[str] = ..., balancing_algorithm: _Optional[_Union[LoadBalancingAlgorithm, str]] = ..., with_session_affinity: _Optional[bool] = ..., enabled: _Optional[bool] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., access_control_list: _Optional[_Union[_acl_pb2.AccessControlList, _Mapping]] = ..., credentials: _Optional[_Union[_credentials_pb2.Credentials, _Mapping]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class CreatePeerRequest(_message.Message):
    __slots__ = ("name", "username", "aor", "contact_addr", "balancing_algorithm", "with_session_affinity", "access_control_list_ref", "credentials_ref", "enabled", "extended", "max_contacts", "expires")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    AOR_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ADDR_FIELD_NUMBER: _ClassVar[int]
    BALANCING_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WITH_SESSION_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    name: str
    username: str
    aor: str
    contact_addr: str
    balancing_algorithm: LoadBalancingAlgorithm
    with_session_affinity: bool
    access_control_list_ref: str
    credentials_ref: str
    enabled: bool
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, name: _Optional[str] = ..., username: _Optional[str] = ..., aor: _Optional[str] = ..., contact_addr: _Optional[str] = ..., balancing_algorithm: _Optional[_Union[LoadBalancingAlgorithm, str]] = ..., with_session_affinity: _Optional[bool] = ..., access_control_list_ref: _Optional[str] = ..., credentials_ref: _Optional[str] = ..., enabled: _Optional[bool] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class UpdatePeerRequest(_message.Message):
    __slots__ = ("ref", "name", "aor", "contact_addr", "balancing_algorithm", "with_session_affinity", "access_control_list_ref", "credentials_ref", "enabled", "extended", "max_contacts", "expires")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AOR_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ADDR_FIELD_NUMBER: _ClassVar[int]
    BALANCING_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WITH_SESSION_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ref: str
    name: str
    aor: str
    contact_addr: str
    balancing_algorithm: LoadBalancingAlgorithm
    with_session_affinity: bool
    access_control_list_ref: str
    credentials_ref: str
    enabled: bool
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, ref: _Optional[str] = ..., name: _Optional[str] = ..., aor: _Optional[str] = ..., contact_addr: _Optional[str] = ..., balancing_algorithm: _Optional[_Union[LoadBalancingAlgorithm, str]] = ..., with_session_affinity: _Optional[bool] = ..., access_control_list_ref: _Optional[str] = ..., credentials_ref: _Optional[str] = ..., enabled: _Optional[bool] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class GetPeerRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeletePeerRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Peer]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FindByRequest(_message.Message):
    __slots__ = ("fieldName", "fieldValue")
    FIELDNAME_FIELD_NUMBER: _ClassVar[int]
    FIELDVALUE_FIELD_NUMBER: _ClassVar[int]
    fieldName: str
    fieldValue: str
    def __init__(self, fieldName: _Optional[str] = ..., fieldValue: _Optional[str] = ...) -> None: ...

class FindByResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, items: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...
