"""REGISTER with digest over TCP and over TLS (RFC 3261 §18.2.2, §26.2.1), then removed with expires 0.

SIPp over TCP (`-t t1`) straight to the proxy. Debian's SIPp is built without OpenSSL ("To use a TLS
transport you must compile SIPp with OpenSSL"), so SIPp reaches the TLS port (25061, the server's
self-signed development certificate) through a TLS bridge in this test: SIPp speaks TCP to the bridge, the
bridge holds one TLS connection to the proxy per SIPp connection. sipsak (built with GnuTLS) registers over
TLS (1.2, see tests/support/acceptance.Sipsak) and TCP natively. Agent 1001 of config/ as shipped registers a Contact
no other test uses, and removes it.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.acceptance import CONTACT_PORTS, PASSWORDS, PROXY_HOST, PROXY_TLS_PORT

USER = "1001"
CONTACT_PORT = CONTACT_PORTS["tcp-1001"]
KEYS = {"aor_user": USER, "contact_port": str(CONTACT_PORT)}


@contextmanager
def tls_bridge() -> Iterator[int]:
    """A TCP port on 127.0.0.1 whose connections are carried over TLS to the proxy's TLS port."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed development certificate
    listener = socket.create_server((PROXY_HOST, 0))
    open_sockets: list[socket.socket] = [listener]

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65535):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            open_sockets.append(client)
            try:
                server = context.wrap_socket(socket.create_connection((PROXY_HOST, PROXY_TLS_PORT), timeout=5))
            except OSError:  # no TLS connection to the proxy: SIPp sees its connection closed
                client.close()
                continue
            server.settimeout(None)
            open_sockets.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        for sock in open_sockets:
            sock.close()


def _check_register_unregister(result) -> None:  # type: ignore[no-untyped-def]
    oks = result.received("SIP/2.0 200")
    assert len(oks) == 2 and len(result.received("SIP/2.0 401")) == 2
    contact = f"<sip:{USER}@127.0.0.1:{CONTACT_PORT}>"
    assert f"{contact};expires=" in oks[0]
    assert contact not in oks[1]  # expires 0 removed it


def test_sipp_registers_over_tcp(sipp) -> None:  # type: ignore[no-untyped-def]
    result = sipp.run("tcp_tls_register/register_unregister.xml", transport="t1",
                      keys={**KEYS, "via_transport": "TCP"}, auth=(USER, PASSWORDS[USER]))
    sipp.assert_ok(result)
    _check_register_unregister(result)


def test_sipp_registers_over_tls(sipp) -> None:  # type: ignore[no-untyped-def]
    with tls_bridge() as bridge_port:
        result = sipp.run("tcp_tls_register/register_unregister.xml", transport="t1",
                          remote=(PROXY_HOST, bridge_port), keys={**KEYS, "via_transport": "TLS"},
                          auth=(USER, PASSWORDS[USER]))
    sipp.assert_ok(result)
    _check_register_unregister(result)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_sipsak_registers_over_a_connection(sipsak, transport: str) -> None:  # type: ignore[no-untyped-def]
    contact = f"sip:{USER}@127.0.0.1:{CONTACT_PORT}"
    registered = sipsak.register(USER, PASSWORDS[USER], contact, expires=600, transport=transport)
    assert registered.returncode == 0, registered.report()
    assert re.search(rf"^Via: SIP/2\.0/{transport.upper()} ", registered.output, flags=re.MULTILINE)
    assert f"Contact: <{contact}>;expires=" in registered.output, registered.report()
    removed = sipsak.register(USER, PASSWORDS[USER], contact, expires=0, transport=transport)
    assert removed.returncode == 0, removed.report()
    assert f"Contact: <{contact}>;expires=" not in removed.output[removed.output.rfind("SIP/2.0 200"):]
