"""Phones on a second, non-loopback address of the host (issue 13): inside scripts/in-netns, lo holds 192.0.2.1/24,
so SIPp phones bind 192.0.2.10/11 and reach the wildcard EdgePort at 192.0.2.1. Every header naming us, and every
packet we send them, carries 192.0.2.1: never 0.0.0.0, 127.0.0.1 or an external address.

* On config/ as shipped, 192.0.2.0/24 is outside the localnets (TEST-NET is no private range) and there is no
  external address: the server advertises the address the phones reach it on. The shipped ACL allows only the
  private ranges, so this test adds the range to the server copy's acls.yaml (a resource reload) and says so.
* On the extras server the range is in the localnets (playing the LAN) and the server has an external address
  (203.0.113.9, as behind NAT): LAN phones must still see 192.0.2.1.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.acceptance import CONTACT_PORTS, Server, Sipp, SippResult

SERVER = "192.0.2.1"
CALLER, CALLEE = "192.0.2.10", "192.0.2.11"
ACL_WITH_TEST_NET = """\
- apiVersion: v2beta1
  kind: AccessControlList
  ref: acl-01
  metadata:
    name: Local networks and TEST-NET-1 (tests/acceptance/lan)
  spec:
    accessControlList:
      deny: [0.0.0.0/0]
      allow: [127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 192.0.2.0/24]
"""


def _call(sipp: Sipp) -> tuple[SippResult, SippResult]:
    remote = (SERVER, sipp.profile.sip_port)
    sipp.assert_ok(sipp.register("1002", local_ip=CALLEE, remote=remote))
    try:
        callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, local_ip=CALLEE)
        caller = sipp.run("agent_call/uac.xml", service="1002", keys={"caller": "1001"},
                          auth=("1001", sipp.password("1001")), local_ip=CALLER, remote=remote)
        answered = callee.result()
    finally:  # a binding left behind would ring in the calls of later tests (forking)
        sipp.unregister("1002", f"<sip:1002@{CALLEE}:{CONTACT_PORTS['1002']}>", local_ip=CALLEE, remote=remote)
    sipp.assert_ok(caller, answered)
    return caller, answered


def _assert_advertised(caller: SippResult, callee: SippResult, port: int) -> None:
    (invite,) = callee.received("INVITE")
    assert invite.startswith(f"INVITE sip:1002@{CALLEE}:{CONTACT_PORTS['1002']} SIP/2.0"), invite
    assert re.search(rf"^Via: SIP/2\.0/UDP {re.escape(SERVER)}:{port};", invite, flags=re.MULTILINE), invite
    record_routes = re.findall(r"^Record-Route: <sip:([^:;>]+):(\d+)", invite, flags=re.MULTILINE)
    assert record_routes and all(rr == (SERVER, str(port)) for rr in record_routes), invite
    (ok,) = [m for m in caller.received("SIP/2.0 200") if re.search(r"^CSeq:\s*\d+ INVITE", m, flags=re.MULTILINE)]
    assert re.search(rf"^Record-Route: <sip:{re.escape(SERVER)}:{port};", ok, flags=re.MULTILINE), ok
    for message in (invite, ok):
        assert "0.0.0.0" not in message and "203.0.113.9" not in message and "127.0.0.1" not in message, message
    assert callee.received("BYE") and callee.received("ACK")


def _wait_until_registers(sipp: Sipp, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not sipp.register("1002", local_ip=CALLEE, remote=(SERVER, sipp.profile.sip_port)).ok:
        assert time.monotonic() < deadline, "the ACL with 192.0.2.0/24 was not applied"
        time.sleep(0.5)


@pytest.fixture
def shipped_acl_with_test_net(routr_server: Server):  # type: ignore[no-untyped-def]
    """The shipped ACL allows only private ranges: TEST-NET-1 is added for this test, then the file is restored."""
    acls: Path = routr_server.config_dir / "resources" / "acls.yaml"
    shipped = acls.read_text()
    acls.write_text(ACL_WITH_TEST_NET)
    try:
        yield
    finally:
        acls.write_text(shipped)


def test_phones_outside_the_localnets_call_through_the_address_they_reach(  # type: ignore[no-untyped-def]
        sipp, shipped_acl_with_test_net) -> None:
    _wait_until_registers(sipp, 15.0)
    caller, callee = _call(sipp)
    _assert_advertised(caller, callee, sipp.profile.sip_port)


def test_lan_phones_of_a_server_behind_nat_never_see_its_external_address(sipp_extras) -> None:  # type: ignore[no-untyped-def]
    caller, callee = _call(sipp_extras)
    _assert_advertised(caller, callee, sipp_extras.profile.sip_port)
