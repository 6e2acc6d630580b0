from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from . import trunks_pb2 as _trunks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExtraHeader(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Number(_message.Message):
    __slots__ = ("api_version", "ref", "name", "tel_url", "aor_link", "city", "country", "country_iso_code", "session_affinity_header", "extra_headers", "created_at", "updated_at", "trunk", "extended")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEL_URL_FIELD_NUMBER: _ClassVar[int]
    AOR_LINK_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_ISO_CODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_AFFINITY_HEADER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HEADERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    ref: str
    name: str
    tel_url: str
    aor_link: str
    city: str
    country: str
    country_iso_code: str
    session_affinity_header: str
    extra_headers: _containers.RepeatedCompositeFieldContainer[ExtraHeader]
    created_at: int
    updated_at: int
    trunk: _trunks_pb2.Trunk
    extended: _struct_pb2.Struct
    def __init__(self, api_version: _Optional[str] = ..., ref: _Optional[str] = ..., name: _Optional[str] = ..., tel_url: _Optional[str] = ..., aor_link: _Optional[str] = ..., city: _Optional[str] = ..., country: _Optional[str] = ..., country_iso_code: _Optional[str] = ..., session_affinity_header: _Optional[str] = ..., extra_headers: _Optional[_Iterable[_Union[ExtraHeader, _Mapping]]] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., trunk: _Optional[_Union[_trunks_pb2.Trunk, _Mapping]] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateNumberRequest(_message.Message):
    __slots__ = ("api_version", "name", "tel_url", "aor_link", "city", "country", "country_iso_code", "session_affinity_header", "extra_headers", "trunk_ref", "extended")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEL_URL_FIELD_NUMBER: _ClassVar[int]
    AOR_LINK_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_ISO_CODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_AFFINITY_HEADER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HEADERS_FIELD_NUMBER: _ClassVar[int]
    TRUNK_REF_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    name: str
    tel_url: str
    aor_link: str
    city: str
    country: str
    country_iso_code: str
    session_affinity_header: str
    extra_headers: _containers.RepeatedCompositeFieldContainer[ExtraHeader]
    trunk_ref: str
    extended: _struct_pb2.Struct
    def __init__(self, api_version: _Optional[str] = ..., name: _Optional[str] = ..., tel_url: _Optional[str] = ..., aor_link: _Optional[str] = ..., city: _Optional[str] = ..., country: _Optional[str] = ..., country_iso_code: _Optional[str] = ..., session_affinity_header: _Optional[str] = ..., extra_headers: _Optional[_Iterable[_Union[ExtraHeader, _Mapping]]] = ..., trunk_ref: _Optional[str] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdateNumberRequest(_message.Message):
    __slots__ = ("ref", "name", "aor_link", "session_affinity_header", "extra_headers", "trunk_ref", "extended")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AOR_LINK_FIELD_NUMBER: _ClassVar[int]
    SESSION_AFFINITY_HEADER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HEADERS_FIELD_NUMBER: _ClassVar[int]
    TRUNK_REF_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    ref: str
    name: str
    aor_link: str
    session_affinity_header: str
    extra_headers: _containers.RepeatedCompositeFieldContainer[ExtraHeader]
    trunk_ref: str
    extended: _struct_pb2.Struct
    def __init__(self, ref: _Optional[str] = ..., name: _Optional[str] = ..., aor_link: _Optional[str] = ..., session_affinity_header: _Optional[str] = ..., extra_headers: _Optional[_Iterable[_Union[ExtraHeader, _Mapping]]] = ..., trunk_ref: _Optional[str] = ..., extended: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetNumberRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteNumberRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListNumberRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNumbersResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Number]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Number, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
    items: _containers.RepeatedCompositeFieldContainer[Number]
    def __init__(self, items: _Optional[_Iterable[_Union[Number, _Mapping]]] = ...) -> None: ...
