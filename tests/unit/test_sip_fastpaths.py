"""The parser's fast paths give what the general code gives: quoted parameter lists, single list elements,
pre-keyed header construction and the cache of valid Request-URIs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routr_ray.sip import ParseError, parse
from routr_ray.sip import parser as sip_parser
from routr_ray.sip.headers import Headers, header_key
from routr_ray.sip.syntax import parse_params, split_list

_TOKEN = st.text(alphabet="abcXYZ09-.!%*_+`'~", min_size=1, max_size=6)
_VALUE = st.one_of(
    st.none(),
    st.text(alphabet="abc09-.[]:", min_size=1, max_size=6),
    st.text(alphabet='ab ;,<>=\\"', max_size=6).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)
_PARAMS = st.lists(st.tuples(_TOKEN, _VALUE), min_size=1, max_size=5)


def _render(params: list[tuple[str, str | None]], sep: str) -> str:
    return sep.join(name if value is None else f"{name}={value}" for name, value in params)


@given(_PARAMS)
def test_quoted_parameter_fast_path_equals_the_general_reader(params: list[tuple[str, str | None]]) -> None:
    fast = parse_params(_render(params, ";"))
    general = parse_params(_render(params, " ; "))  # LWS around ";" forces the general reader
    assert fast == general
    assert fast == {name.lower(): value for name, value in params}


def test_quoted_parameter_values_keep_their_quotes_and_separators() -> None:
    assert parse_params('+sip.instance="<urn:uuid:1>";reg-id=1;ob;x="a;b\\"c"') == {
        "+sip.instance": '"<urn:uuid:1>"', "reg-id": "1", "ob": None, "x": '"a;b\\"c"'}
    with pytest.raises(ParseError):
        parse_params('x="unterminated;y=1')


@given(st.text(alphabet='ab <>";\\ ', max_size=12))
def test_single_element_fast_path_equals_the_scan(value: str) -> None:
    # a value without a comma is one element; the scan of a value with a comma after it must agree
    try:
        scanned = split_list(value + ",x")[:-1]
    except ParseError:
        with pytest.raises(ParseError):
            split_list(value)
        return
    assert split_list(value) == scanned


def test_single_element_with_quotes_and_brackets() -> None:
    value = ' <sip:1@h;transport=udp;ob>;+sip.instance="<urn:uuid:1>";reg-id=1 '
    assert split_list(value) == [value.strip()]
    for broken in ('"open', "<sip:x", 'a "b\\'):
        with pytest.raises(ParseError):
            split_list(broken)


def test_headers_from_keyed_equals_headers_from_items() -> None:
    items = [("v", "SIP/2.0/UDP h"), ("Call-ID", "x"), ("X-Custom", "1"), ("m", "<sip:a@b>")]
    keyed = Headers.from_keyed((header_key(n), n, v) for n, v in items)
    plain = Headers(items)
    assert keyed == plain and keyed.keyed_items() == plain.keyed_items()
    assert keyed.get("contact") == "<sip:a@b>" and keyed.render() == plain.render()
    assert plain.keyed_items()[0] == ("via", "v", "SIP/2.0/UDP h")


MESSAGE = (
    b"OPTIONS %s SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
    b"To: <sip:a@b>\r\nCall-ID: n\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def test_valid_request_uris_are_remembered_and_parsed_lazily() -> None:
    sip_parser._VALID_RURIS.clear()
    uri = b"sip:alice@example.com:5070;transport=tcp"
    first = parse(MESSAGE % uri)
    second = parse(MESSAGE % uri)  # the check is skipped, the URI parsed on first use
    assert uri.decode() in sip_parser._VALID_RURIS
    assert str(second.request_uri) == str(first.request_uri) == uri.decode()  # type: ignore[union-attr]
    assert second.request_uri.port == 5070 and second.request_uri.transport == "tcp"  # type: ignore[union-attr]


def test_invalid_request_uris_are_never_remembered() -> None:
    sip_parser._VALID_RURIS.clear()
    for _ in range(2):
        with pytest.raises(ParseError) as error:
            parse(MESSAGE % b"sip:alice@example.com?Subject=x")
        assert error.value.status == 400
    assert not sip_parser._VALID_RURIS


def test_valid_request_uri_cache_is_bounded() -> None:
    for n in range(4100):
        parse(MESSAGE % f"sip:u{n}@example.com".encode())
    assert 0 < len(sip_parser._VALID_RURIS) <= 4096
