"""A call to an agent of the domain with no binding is answered 480 Temporarily Unavailable (agent 1003, which no
test registers, exists on the extras server only: tests/acceptance/config/resources/agents-extra.yaml)."""

from __future__ import annotations


def test_call_to_unregistered_agent_gets_480(sipp_extras) -> None:  # type: ignore[no-untyped-def]
    sipp = sipp_extras
    result = sipp.run("unregistered/invite_unregistered.xml", service="1003", keys={"caller": "1001"},
                      auth=("1001", sipp.password("1001")))
    sipp.assert_ok(result)
    assert result.received("SIP/2.0 407")
    assert result.received("SIP/2.0 480")
