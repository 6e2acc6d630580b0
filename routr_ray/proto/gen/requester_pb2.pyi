from . import common_pb2 as _common_pb2
from . import processor_pb2 as _processor_pb2
from . import sipmessage_pb2 as _sipmessage_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendMessageRequest(_message.Message):
    __slots__ = ("target", "method", "transport", "message")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    target: str
    method: _processor_pb2.Method
    transport: _common_pb2.Transport
    message: _sipmessage_pb2.SIPMessage
    def __init__(self, target: _Optional[str] = ..., method: _Optional[_Union[_processor_pb2.Method, str]] = ..., transport: _Optional[_Union[_common_pb2.Transport, str]] = ..., message: _Optional[_Union[_sipmessage_pb2.SIPMessage, _Mapping]] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _sipmessage_pb2.SIPMessage
    def __init__(self, message: _Optional[_Union[_sipmessage_pb2.SIPMessage, _Mapping]] = ...) -> None: ...
