from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from . import acl_pb2 as _acl_pb2
from . import credentials_pb2 as _credentials_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrunkURI(_message.Message):
    __slots__ = ("host", "port", "transport", "user", "weight", "priority", "enabled")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    transport: str
    user: str
    weight: int
    priority: int
    enabled: bool
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ..., transport: _Optional[str] = ..., user: _Optional[str] = ..., weight: _Optional[int] = ..., priority: _Optional[int] = ..., enabled: _Optional[bool] = ...) -> None: ...

class Trunk(_message.Message):
    __slots__ = ("ref", "api_version", "name", "send_register", "inbound_uri", "created_at", "updated_at", "access_control_list", "inbound_credentials", "outbound_credentials", "uris", "extended")
    REF_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEND_REGISTER_FIELD_NUMBER: _ClassVar[int]
    INBOUND_URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_FIELD_NUMBER: _ClassVar[int]
    INBOUND_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    ref: str
    api_version: str
    name: str
    send_register: bool
    inbound_uri: str
    created_at: int
    updated_at: int
    access_control_list: _acl_pb2.AccessControlList
    inbound_credentials: _credentials_pb2.Credentials
    outbound_credentials: _credentials_pb2.Credentials
    uris: _containers.RepeatedCompositeFieldContainer[TrunkURI]
    extended: _struct_pb2.Struct
    def __init__(self, ref: _Optional[str] = ..., api_version: _Optional[str] = ..., name: _Optional[str] = ..., send_register: _Optional[bool] = ..., inbound_uri: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., access_control_list: _Optional[_Union[_acl_pb2.AccessControlList, _Mapping]] = ..., inbound_credentials: _Optional[_Union[_credentials_pb2.Credentials, _Mapping]] = ..., outbound_credentials: _Optional[_Union[_credentials_pb2.Credentials, _Mapping]] = ..., uris: _Optional[_Iterable[_Union[TrunkURI, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateTrunkRequest(_message.Message):
    __slots__ = ("api_version", "name", "send_register", "inbound_uri", "access_control_list_ref", "inbound_credentials_ref", "outbound_credentials_ref", "uris", "extended")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEND_REGISTER_FIELD_NUMBER: _ClassVar[int]
    INBOUND_URI_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    INBOUND_CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    name: str
    send_register: bool
    inbound_uri: str
    access_control_list_ref: str
    inbound_credentials_ref: str
    outbound_credentials_ref: str
    uris: _containers.RepeatedCompositeFieldContainer[TrunkURI]
    extended: _struct_pb2.Struct
    def __init__(self, api_version: _Optional[str] = ..., name: _Optional[str] = ..., send_register: _Optional[bool] = ..., inbound_uri: _Optional[str] = ..., access_control_list_ref: _Optional[str] = ..., inbound_credentials_ref: _Optional[str] = ..., outbound_credentials_ref: _Optional[str] = ..., uris: _Optional[_Iterable[_Union[TrunkURI, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdateTrunkRequest(_message.Message):
    __slots__ = ("api_version", "ref", "name", "send_register", "inbound_uri", "access_control_list_ref", "inbound_credentials_ref", "outbound_credentials_ref", "uris", "extended")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEND_REGISTER_FIELD_NUMBER: _ClassVar[int]
    INBOUND_URI_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    INBOUND_CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    ref: str
    name: str
    send_register: bool
    inbound_uri: str
    access_control_list_ref: str
    inbound_credentials_ref: str
    outbound_credentials_ref: str
    uris: _containers.RepeatedCompositeFieldContainer[TrunkURI]
    extended: _struct_pb2.Struct
    def __init__(self, api_version: _Optional[str] = ..., ref: _Optional[str] = ..., name: _Optional[str] = ..., send_register: _Optional[bool] = ..., inbound_uri: _Optional[str] = ..., access_control_list_ref: _Optional[str] = ..., inbound_credentials_ref: _Optional[str] = ..., outbound_credentials_ref: _Optional[str] = ..., uris: _Optional[_Iterable[_Union[TrunkURI, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetTrunkRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteTrunkRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListTrunkRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTrunksResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Trunk]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Trunk, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FindByRequest(_message.Message):
    __slots__ = ("field_name", "field_value")
    FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_VALUE_FIELD_NUMBER: _ClassVar[int]
    field_name: str
    field_value: str
    def __init__(self, field_name: _Optional[str] = ..., field_value: _Optional[str] = ...) -> None: ...

class FindByResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Trunk]
    def __init__(self, items: _Optional[_Iterable[_Union[Trunk, _Mapping]]] = ...) -> None: ...
