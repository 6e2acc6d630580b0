from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from . import domains_pb2 as _domains_pb2
from . import credentials_pb2 as _credentials_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Privacy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIVATE: _ClassVar[Privacy]
    NONE: _ClassVar[Privacy]
PRIVATE: Privacy
NONE: Privacy

class Agent(_message.Message):
    __slots__ = ("api_version", "ref", "name", "username", "privacy", "enabled", "created_at", "updated_at", "domain", "credentials", "extended", "max_contacts", "expires")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    ref: str
    name: str
    username: str
    privacy: Privacy
    enabled: bool
    created_at: int
    updated_at: int
    domain: _domains_pb2.Domain
    credentials: _credentials_pb2.Credentials
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, api_version: _Optional[str] = ..., ref: _Optional[str] = ..., name: _Optional[str] = ..., username: _Optional[str] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., enabled: _Optional[bool] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., domain: _Optional[_Union[_domains_pb2.Domain, _Mapping]] = ..., credentials: _Optional[_Union[_credentials_pb2.Credentials, _Mapping]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class CreateAgentRequest(_message.Message):
    __slots__ = ("name", "username", "privacy", "enabled", "domain_ref", "credentials_ref", "extended", "max_contacts", "expires")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_REF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    name: str
    username: str
    privacy: Privacy
    enabled: bool
    domain_ref: str
    credentials_ref: str
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, name: _Optional[str] = ..., username: _Optional[str] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., enabled: _Optional[bool] = ..., domain_ref: _Optional[str] = ..., credentials_ref: _Optional[str] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class UpdateAgentRequest(_message.Message):
    __slots__ = ("ref", "name", "privacy", "enabled", "domain_ref", "credentials_ref", "extended", "max_contacts", "expires")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_REF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_REF_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ref: str
    name: str
    privacy: Privacy
    enabled: bool
    domain_ref: str
    credentials_ref: str
    extended: _struct_pb2.Struct
    max_contacts: int
    expires: int
    def __init__(self, ref: _Optional[str] = ..., name: _Optional[str] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., enabled: _Optional[bool] = ..., domain_ref: _Optional[str] = ..., credentials_ref: _Optional[str] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_contacts: _Optional[int] = ..., expires: _Optional[int] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteAgentRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Agent]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
    items: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, items: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...
