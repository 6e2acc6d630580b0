"""A call to an agent of the domain with no binding is answered 480 Temporarily Unavailable."""

from __future__ import annotations


def test_call_to_unregistered_agent_gets_480(sipp) -> None:  # type: ignore[no-untyped-def]
    result = sipp.run("unregistered/invite_unregistered.xml", service="1003", keys={"caller": "1001"},
                      auth=("1001", "secret1001"))
    sipp.assert_ok(result)
    assert result.received("SIP/2.0 407")
    assert result.received("SIP/2.0 480")
