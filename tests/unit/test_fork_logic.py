"""Issue 16: which contacts a call rings (processors/connect/forking.py) and what the caller gets back from the
branches (edge/forking.py), without sockets."""

from __future__ import annotations

import json

from routr_ray.config.resources import Forking, ForkingMode
from routr_ray.edge.directives import EMPTY
from routr_ray.edge.forking import BRANCHES_KEY, FORK_KEY, Fork, ForkedBranch, read_branches
from routr_ray.processors.connect import forking as connect_forking
from routr_ray.processors.connect import processor as connect_processor
from routr_ray.processors.connect.forking import branches_of
from routr_ray.proto.gen import location_pb2
from routr_ray.sip import Request, Response, parse

INVITE = (b"INVITE sip:1002@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport\r\n"
          b"Max-Forwards: 69\r\nFrom: <sip:1001@sip.local>;tag=a\r\nTo: <sip:1002@sip.local>\r\n"
          b"Call-ID: c\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n")


def route(port: int, q: float = -1.0) -> location_pb2.Route:
    return location_pb2.Route(host="127.0.0.1", port=str(port), transport=0,
                              contact_uri=f"sip:1002@127.0.0.1:{port}", q_value=q)


def test_the_keys_are_the_processors() -> None:
    assert BRANCHES_KEY == connect_processor.BRANCHES_KEY and FORK_KEY == connect_processor.FORK_KEY


def test_parallel_groups_by_q_highest_first_unspecified_counts_as_one() -> None:
    routes = [route(5001, 0.5), route(5002), route(5003, 1.0), route(5004, 0.5)]  # most recent first
    branches, timeouts = branches_of(routes, Forking())
    assert [(b.next_hop.port, b.group) for b in branches] == [(5002, 0), (5003, 0), (5001, 1), (5004, 1)]
    assert timeouts == {}


def test_sequential_is_one_contact_per_group_with_a_ring_timeout() -> None:
    branches, timeouts = branches_of([route(5001), route(5002)], Forking(ForkingMode.SEQUENTIAL))
    assert [(b.next_hop.port, b.group) for b in branches] == [(5001, 0), (5002, 1)]
    assert timeouts == {0: connect_forking.DEFAULT_SEQUENTIAL_TIMEOUT, 1: connect_forking.DEFAULT_SEQUENTIAL_TIMEOUT}
    _, timeouts = branches_of([route(5001), route(5002)], Forking(ForkingMode.SEQUENTIAL, 7.5))
    assert timeouts == {0: 7.5, 1: 7.5}


def test_latest_is_the_most_recent_binding_and_branches_are_bounded() -> None:
    branches, _ = branches_of([route(5001), route(5002)], Forking(ForkingMode.LATEST))
    assert [b.next_hop.port for b in branches] == [5001]
    many = [route(6000 + i) for i in range(40)]
    assert len(branches_of(many, Forking())[0]) == connect_forking.MAX_BRANCHES


def test_branches_are_read_from_the_metadata_and_junk_is_skipped() -> None:
    metadata = {
        FORK_KEY: json.dumps({"group": 0, "timeouts": {"1": 15, "2": 0}}),
        BRANCHES_KEY: json.dumps([
            {"message": INVITE.decode("latin-1"), "group": 1, "routr-ray.next-hop": "sip:127.0.0.1:5071"},
            {"message": "not SIP", "group": 1},
            {"group": 2},
        ]),
    }
    group, timeouts, branches = read_branches(metadata)  # type: ignore[misc]
    assert group == 0 and timeouts == {1: 15.0}
    (branch,) = branches
    assert branch.group == 1 and branch.directive.next_hop is not None and branch.directive.next_hop.port == 5071
    assert read_branches({}) is None and read_branches({BRANCHES_KEY: "{"}) is None


def _response(status: int, *headers: tuple[str, str]) -> Response:
    text = (f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            f"To: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n")
    text += "".join(f"{name}: {value}\r\n" for name, value in headers)
    message = parse((text + "Content-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


def _fork(live: int, waiting: tuple[int, ...] = ()) -> Fork:
    request = parse(INVITE)
    assert isinstance(request, Request)
    fork, _ = Fork.of(0, {}, [ForkedBranch(request, EMPTY, g) for g in waiting])
    for _ in range(live):
        fork.started()
    return fork


def own(status: int) -> Response:
    return _response(status)


def test_the_lowest_class_wins_and_a_6xx_beats_everything() -> None:
    fork = _fork(3)
    fork.branch_ended(_response(503), 503)
    fork.branch_ended(_response(486), 486)
    assert not fork.ended
    fork.branch_ended(_response(302), 302)
    assert fork.ended and fork.final(own).status == 302
    fork = _fork(2)
    fork.branch_ended(_response(302), 302)
    fork.branch_ended(_response(603), 603)
    assert fork.declined and fork.final(own).status == 603


def test_a_chosen_503_becomes_500_and_a_branch_without_response_counts_as_408() -> None:
    fork = _fork(1)
    fork.branch_ended(_response(503), 503)
    assert fork.final(own).status == 500
    fork = _fork(1)
    fork.branch_ended(None, 408)
    assert fork.final(own).status == 408


def test_challenges_are_aggregated_into_the_chosen_401_or_407() -> None:
    fork = _fork(2)
    fork.branch_ended(_response(401, ("WWW-Authenticate", 'Digest realm="a"')), 401)
    fork.branch_ended(_response(407, ("Proxy-Authenticate", 'Digest realm="b"')), 407)
    final = fork.final(own)
    assert final.status == 401
    assert final.headers.get_all("WWW-Authenticate") == ['Digest realm="a"']
    assert final.headers.get_all("Proxy-Authenticate") == ['Digest realm="b"']


def test_the_next_group_rings_only_when_the_current_one_ended_without_an_answer() -> None:
    fork = _fork(1, waiting=(1, 1, 2))
    assert fork.next_group() == []  # a branch still rings
    fork.branch_ended(_response(486), 486)
    ready = fork.next_group()
    assert [b.group for b in ready] == [1, 1] and fork.group == 1
    for _ in ready:
        fork.started()
    fork.branch_ended(_response(480), 480)
    fork.branch_ended(_response(480), 480)
    assert [b.group for b in fork.next_group()] == [2]
    fork = _fork(1, waiting=(1,))
    fork.answered_2xx()
    assert fork.waiting == [] and fork.next_group() == []
    fork = _fork(1, waiting=(1,))
    fork.branch_ended(_response(600), 600)
    assert fork.next_group() == [] and fork.ended
