"""The real server (`routr-ray run` with config/ as shipped, ports moved: dispatcher gRPC 25901, Location API 25902,
health 28080, none of them with a token) seen from the network, as an attacker sees it: which of its ports listen
beyond loopback, and what its dispatcher's gRPC port answers to a CANCEL towards the PSTN (issue 14 item 1).

Ray's own ports listen on every interface (docs/security.md: token auth and a firewall protect them); the ports
routr-ray opens itself must not.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import grpc
import pytest

from routr_ray.proto.convert import make_message_request
from routr_ray.proto.gen import processor_pb2_grpc
from routr_ray.sip import parse
from tests.support.acceptance import SHIPPED_PORTS, Server

DISPATCHER, LOCATION, HEALTH = SHIPPED_PORTS[51901], SHIPPED_PORTS[51902], SHIPPED_PORTS[8080]
TRUNK01 = b"trunk01:1234"  # trunk-01's outbound credentials (config/resources/credentials.yaml)
LISTEN = "0A"


def listeners() -> dict[int, set[str]]:
    """port -> the addresses TCP sockets listen on in this network namespace (from /proc/net/tcp and tcp6)."""
    found: dict[int, set[str]] = {}
    for name, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != LISTEN:
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))  # 32-bit words in host order
            ip = ipaddress.ip_address(packed)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # gRPC binds 127.0.0.1 as a v4-mapped IPv6 socket
            found.setdefault(int(port_hex, 16), set()).add(str(ip))
    return found


def test_routr_rays_own_ports_listen_on_loopback_only(routr_server: Server) -> None:
    ports = listeners()
    for port in (DISPATCHER, LOCATION, HEALTH):
        assert ports.get(port) == {"127.0.0.1"}, (port, ports.get(port))


CANCEL = (
    b"CANCEL sip:+17065550100@sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:15999;branch=z9hG4bK-attack-cancel;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@sip.local>;tag=attacker\r\n"
    b"To: <sip:+17065550100@sip.local>\r\n"
    b"Call-ID: attack-cancel@127.0.0.1\r\n"
    b"CSeq: 1 CANCEL\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("host", ["127.0.0.1", "192.0.2.1"])
def test_a_cancel_towards_the_pstn_through_51901_returns_no_trunk_credentials(routr_server: Server, host: str) -> None:
    # `sender` claims the trunk provider's address; the server must neither believe it nor answer with secrets
    request = make_message_request(parse(CANCEL), edge_port_ref="attacker", sender=("198.51.100.7", 5060, "UDP"),
                                   metadata={"routr-ray.processor": "connect-processor"})
    with grpc.insecure_channel(f"{host}:{DISPATCHER}") as channel:
        stub = processor_pb2_grpc.ProcessorStub(channel)
        if host != "127.0.0.1":
            with pytest.raises(grpc.RpcError) as refused:
                stub.ProcessMessage(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # nothing listens there
            return
        reply = stub.ProcessMessage(request, timeout=30)
    assert [key for key in reply.metadata if key.startswith("routr-ray.")] == []
    raw = reply.SerializeToString()
    assert TRUNK01 not in raw and base64.b64encode(TRUNK01) not in raw
