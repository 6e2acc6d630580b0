"""Processor selection: config order, methods AND matchFunc, responses back to their processor."""

from __future__ import annotations

import logging

import pytest
from test_dispatch_support import message_request, sip_request, sip_response

from routr_ray.config.dispatcher import ProcessorConfig
from routr_ray.dispatch.matchfunc import MatchFuncError
from routr_ray.dispatch.matching import (
    PROCESSOR_METADATA_KEY,
    DispatchConfigError,
    ProcessorSpec,
    Router,
    stamp_processor,
)

PROCESSORS = [
    ProcessorSpec("messages", "m:1", ("MESSAGE",), "req => true"),
    ProcessorSpec("vip", "v:1", ("INVITE", "BYE"), "req => req.message.requestUri.user === '1001'"),
    ProcessorSpec("connect", "c:1", ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL"), "req => true"),
]


def test_first_processor_whose_methods_and_match_func_match_wins() -> None:
    router = Router(PROCESSORS)
    assert router.select(message_request(sip_request("INVITE", "1001"))).ref == "vip"
    assert router.select(message_request(sip_request("INVITE", "1002"))).ref == "connect"
    assert router.select(message_request(sip_request("MESSAGE", "1001"))).ref == "messages"
    assert router.select(message_request(sip_request("OPTIONS", "1001"))) is None


def test_order_decides() -> None:
    router = Router([PROCESSORS[2], PROCESSORS[1]])
    assert router.select(message_request(sip_request("INVITE", "1001"))).ref == "connect"


def test_select_returns_the_config_object_given() -> None:
    config = ProcessorConfig(ref="connect", addr="serve://connect", methods=("INVITE",))
    router = Router([config])
    assert router.select(message_request(sip_request("INVITE"))) is config  # default matchFunc: req => true


def test_routed_methods_in_config_order_without_duplicates() -> None:
    assert Router(PROCESSORS).routed_methods == ("MESSAGE", "INVITE", "BYE", "REGISTER", "ACK", "CANCEL")


def test_response_goes_back_to_the_processor_named_in_metadata() -> None:
    router = Router(PROCESSORS)
    resp = message_request(sip_response(200, "OK", "INVITE"), metadata={PROCESSOR_METADATA_KEY: "messages"})
    assert router.select(resp).ref == "messages"  # named: methods and matchFunc are not consulted


def test_response_without_or_with_unknown_name_uses_the_same_rule() -> None:
    router = Router(PROCESSORS)
    # vip's matchFunc reads requestUri, undefined on a response: JS would throw; it counts as no match.
    assert router.select(message_request(sip_response(200, "OK", "INVITE"))).ref == "connect"
    unknown = message_request(sip_response(200, "OK", "BYE"), metadata={PROCESSOR_METADATA_KEY: "gone"})
    assert router.select(unknown).ref == "connect"


def test_metadata_name_on_a_request_is_ignored() -> None:
    router = Router(PROCESSORS)
    req = message_request(sip_request("INVITE", "1002"), metadata={PROCESSOR_METADATA_KEY: "messages"})
    assert router.select(req).ref == "connect"


def test_match_func_runtime_failure_is_no_match_and_logged_rate_limited(caplog) -> None:  # type: ignore[no-untyped-def]
    router = Router([ProcessorSpec("p", "a:1", ("INVITE",), "req => req.metadata.nope.startsWith('x')")])
    req = message_request(sip_request("INVITE"))
    with caplog.at_level(logging.WARNING, logger="routr_ray.dispatch.matching"):
        for _ in range(5):
            assert router.select(req) is None
    records = [r for r in caplog.records if "matchFunc failed" in r.getMessage()]
    assert len(records) == 1


def test_bad_match_func_is_a_load_error_naming_the_processor() -> None:
    with pytest.raises(MatchFuncError, match="'evil'"):
        Router([PROCESSORS[0], ProcessorSpec("evil", "e:1", ("INVITE",), "req => require('fs')")])


def test_unknown_method_and_duplicate_ref_are_config_errors() -> None:
    with pytest.raises(DispatchConfigError, match="'FOO'"):
        Router([ProcessorSpec("p", "a:1", ("INVITE", "FOO"))])
    with pytest.raises(DispatchConfigError, match="duplicate"):
        Router([PROCESSORS[0], PROCESSORS[0]])


def test_stamp_processor() -> None:
    md: dict[str, str] = {}
    stamp_processor(md, "connect")
    assert md == {PROCESSOR_METADATA_KEY: "connect"}
