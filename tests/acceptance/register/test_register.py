"""Two agents register with digest over UDP (RFC 3261 §10.2, §22.2): 401 in realm sip.local, then 200 with
the binding and its expires."""

from __future__ import annotations

from tests.support.acceptance import CONTACT_PORTS


def test_two_agents_register_with_digest(sipp) -> None:  # type: ignore[no-untyped-def]
    first = sipp.register("1001")
    second = sipp.register("1002")
    sipp.assert_ok(first, second)
    for result, user in ((first, "1001"), (second, "1002")):
        (challenge,) = result.received("SIP/2.0 401")
        assert 'realm="sip.local"' in challenge
        (ok,) = result.received("SIP/2.0 200")
        assert f"<sip:{user}@127.0.0.1:{CONTACT_PORTS[user]}>;expires=" in ok
