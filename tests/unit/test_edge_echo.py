"""``routr-ray.echo.*``: what a processor or middleware labels a branch with comes back with that branch's
responses (routr_ray/edge/directives.py; end to end in tests/integration/test_media_relay.py)."""

from __future__ import annotations

from routr_ray.edge import directives
from routr_ray.edge.forking import read_branches
from routr_ray.media import middleware


def test_echo_items_are_read_bounded_and_kept_on_failover() -> None:
    directive = directives.read_directive({"routr-ray.echo.media": "o:b0", "routr-ray.echo.z": "1",
                                           "routr-ray.echo.big": "x" * 300, "routr-ray.other": "y"})
    assert directive.echo == (("routr-ray.echo.media", "o:b0"), ("routr-ray.echo.z", "1"))
    assert not directive.is_empty
    assert directive.without_next_hop(()).echo == directive.echo
    many = {f"routr-ray.echo.k{i:02d}": "v" for i in range(20)}
    assert len(directives.read_directive(many).echo) == directives.MAX_ECHO_KEYS
    assert directives.read_directive({}).echo == ()


def test_a_branch_entry_carries_its_own_label() -> None:
    invite = ("INVITE sip:1002@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport\r\n"
              "From: <sip:1001@sip.local>;tag=a\r\nTo: <sip:1002@sip.local>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
              "Content-Length: 0\r\n\r\n")
    import json

    metadata = {"routr-ray.fork": json.dumps({"group": 0}), "routr-ray.branches": json.dumps(
        [{"message": invite, "group": 0, "routr-ray.next-hop": "sip:127.0.0.1:5071", "routr-ray.echo.media": "o:b1"}])}
    forked = read_branches(metadata)
    assert forked is not None
    (branch,) = forked[2]
    assert branch.directive.echo == (("routr-ray.echo.media", "o:b1"),)


def test_the_media_relay_uses_the_edges_words() -> None:
    assert middleware.ECHO_KEY.startswith(directives.ECHO_PREFIX)
    from routr_ray.dispatch import middleware as chain
    from routr_ray.edge import forking
    from routr_ray.processors import sdk
    from routr_ray.processors.connect import processor as connect

    assert middleware.BRANCHES_KEY == forking.BRANCHES_KEY == connect.BRANCHES_KEY
    assert middleware.RESPONSES_KEY == chain.RESPONSES_KEY == sdk.RESPONSES_KEY == directives.RESPONSES_KEY
    assert middleware.RESPONSES_ALL == chain.RESPONSES_ALL
