"""Sans-I/O SIP message core (stdlib only): parse, serialize, header model, URIs, stream framing.

RFC 3261 §7, §18.3, §19, §20, §25; RFC 5118 (IPv6); RFC 5626 keepalives. Modules: ``parser`` (parse),
``message`` (Request/Response, typed views), ``headers`` (Headers, compact forms), ``fields`` (Via,
NameAddr, CSeq), ``uri`` (URI), ``syntax`` (tokens, quoted strings, parameter lists), ``framing``
(StreamFramer, keepalives), ``errors`` (ParseError).

What a round trip normalizes (everything else is byte for byte):
- an unmodified parsed message serializes to exactly its input, minus leading CRLFs (§7.5) and minus
  datagram octets past Content-Length (§18.3);
- once modified, the message is rebuilt: untouched header lines keep their exact bytes (folding and
  odd spacing included), changed/added ones are written ``Name: value``; bare-LF input is rebuilt with
  CRLF; a rebuilt message without Content-Length gets one appended;
- header *values* seen through the API are unfolded (CRLF+WSP -> one SP) and stripped (§7.3.1); URI,
  Via and header parameter names are lower-cased in the typed views (values kept as received).
Header bytes are decoded as UTF-8 with ``surrogateescape``, so non-UTF-8 octets survive a round trip.
"""

from .errors import ParseError
from .fields import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from .framing import KEEPALIVE_PING, KEEPALIVE_PONG, KeepalivePing, StreamFramer, is_keepalive_datagram
from .headers import COMPACT_FORMS, LIST_HEADERS, Headers, header_key
from .message import REASON_PHRASES, Message, Request, Response
from .parser import MAX_MESSAGE_SIZE, parse
from .syntax import parse_params, quote, render_params, split_list, unquote
from .uri import URI, format_host, parse_host_port, parse_uri, unescape

__all__ = [
    "COMPACT_FORMS",
    "KEEPALIVE_PING",
    "KEEPALIVE_PONG",
    "LIST_HEADERS",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "URI",
    "CSeq",
    "Headers",
    "KeepalivePing",
    "Message",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "StreamFramer",
    "Via",
    "format_host",
    "header_key",
    "is_keepalive_datagram",
    "parse",
    "parse_cseq",
    "parse_host_port",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "quote",
    "render_params",
    "split_list",
    "unescape",
    "unquote",
]
