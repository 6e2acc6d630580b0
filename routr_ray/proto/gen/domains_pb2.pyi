from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from . import acl_pb2 as _acl_pb2
from . import numbers_pb2 as _numbers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EgressPolicy(_message.Message):
    __slots__ = ("rule", "number_ref", "number")
    RULE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_REF_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    rule: str
    number_ref: str
    number: _numbers_pb2.Number
    def __init__(self, rule: _Optional[str] = ..., number_ref: _Optional[str] = ..., number: _Optional[_Union[_numbers_pb2.Number, _Mapping]] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ("api_version", "ref", "name", "domain_uri", "created_at", "updated_at", "access_control_list", "egress_policies", "extended")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_FIELD_NUMBER: _ClassVar[int]
    EGRESS_POLICIES_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    ref: str
    name: str
    domain_uri: str
    created_at: int
    updated_at: int
    access_control_list: _acl_pb2.AccessControlList
    egress_policies: _containers.RepeatedCompositeFieldContainer[EgressPolicy]
    extended: _struct_pb2.Struct
    def __init__(self, api_version: _Optional[str] = ..., ref: _Optional[str] = ..., name: _Optional[str] = ..., domain_uri: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., access_control_list: _Optional[_Union[_acl_pb2.AccessControlList, _Mapping]] = ..., egress_policies: _Optional[_Iterable[_Union[EgressPolicy, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateDomainRequest(_message.Message):
    __slots__ = ("name", "domain_uri", "access_control_list_ref", "egress_policies", "extended")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_URI_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    EGRESS_POLICIES_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    name: str
    domain_uri: str
    access_control_list_ref: str
    egress_policies: _containers.RepeatedCompositeFieldContainer[EgressPolicy]
    extended: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., domain_uri: _Optional[str] = ..., access_control_list_ref: _Optional[str] = ..., egress_policies: _Optional[_Iterable[_Union[EgressPolicy, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdateDomainRequest(_message.Message):
    __slots__ = ("ref", "name", "access_control_list_ref", "egress_policies", "extended")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_LIST_REF_FIELD_NUMBER: _ClassVar[int]
    EGRESS_POLICIES_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    ref: str
    name: str
    access_control_list_ref: str
    egress_policies: _containers.RepeatedCompositeFieldContainer[EgressPolicy]
    extended: _struct_pb2.Struct
    def __init__(self, ref: _Optional[str] = ..., name: _Optional[str] = ..., access_control_list_ref: _Optional[str] = ..., egress_policies: _Optional[_Iterable[_Union[EgressPolicy, _Mapping]]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetDomainRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteDomainRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListDomainRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDomainsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Domain]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
    items: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, items: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...
