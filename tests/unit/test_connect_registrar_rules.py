"""Registrar rules: CSeq ordering (RFC 3261 §10.3 steps 6-7), RFC 5626 outbound, default contact cap."""

from __future__ import annotations

from test_connect_support import Harness, sip

from routr_ray.processors.connect.processor import DEFAULT_MAX_CONTACTS
from routr_ray.proto.gen import location_pb2
from routr_ray.sip.message import Request, Response

UA = ("10.0.0.6", 5060, "UDP")
INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"


def register(contact: str, *, call_id: str, cseq: int, extra: tuple[str, ...] = ()) -> Request:
    return sip("REGISTER", "sip:sip.local", from_="sip:1002@sip.local", to="sip:1002@sip.local", contact=contact,
               call_id=call_id, cseq=cseq, extra=extra, via="SIP/2.0/UDP 10.0.0.6:5060")


async def send(h: Harness, req: Request) -> Response:
    out, _ = await h.authed(req, "1002", "1234", UA)  # the authorised copy has CSeq + 1
    assert isinstance(out, Response)
    return out


async def bindings(h: Harness, aor: str = "sip:1002@sip.local") -> list[location_pb2.Route]:
    return list((await h.location.find_routes(location_pb2.FindRoutesRequest(aor=aor))).routes)


# ---- item 6 -----------------------------------------------------------------------------------------

async def test_same_call_id_needs_a_higher_cseq() -> None:
    h = Harness()
    assert (await send(h, register("<sip:1002@10.0.0.6>", call_id="reg-a", cseq=10))).status == 200  # CSeq 11
    old = await send(h, register("<sip:1002@10.0.0.6>;expires=0", call_id="reg-a", cseq=10))  # CSeq 11 again
    assert old.status == 400 and "CSeq" in old.reason
    assert len(await bindings(h)) == 1  # not removed
    assert (await send(h, register("<sip:1002@10.0.0.6>", call_id="reg-a", cseq=20))).status == 200
    assert (await bindings(h))[0].cseq == 21
    # another Call-ID (a rebooted UA) may update the binding whatever its CSeq
    assert (await send(h, register("<sip:1002@10.0.0.6>", call_id="reg-b", cseq=1))).status == 200


async def test_star_with_a_stale_cseq_fails_and_keeps_the_bindings() -> None:
    h = Harness()
    await send(h, register("<sip:1002@10.0.0.6>", call_id="reg-c", cseq=10))
    star = register("*", call_id="reg-c", cseq=5, extra=("Expires: 0",))
    assert (await send(h, star)).status == 400
    assert len(await bindings(h)) == 1
    star = register("*", call_id="reg-c", cseq=30, extra=("Expires: 0",))
    assert (await send(h, star)).status == 200
    assert await bindings(h) == []


# ---- item 5 -----------------------------------------------------------------------------------------

async def test_outbound_register_gets_require_outbound_and_echoes_instance_and_reg_id() -> None:
    h = Harness()
    contact = f'<sip:1002@10.0.0.6;ob>;reg-id=1;+sip.instance="{INSTANCE}"'
    resp = await send(h, register(contact, call_id="ob-1", cseq=1, extra=("Supported: path, outbound",)))
    assert resp.status == 200 and resp.headers.get("Require") == "outbound"
    (echoed,) = resp.contacts
    assert echoed.params.get("reg-id") == "1"
    assert echoed.params.get("+sip.instance") == f'"{INSTANCE}"'


async def test_register_without_supported_outbound_gets_no_require() -> None:
    h = Harness()
    contact = f'<sip:1002@10.0.0.6;ob>;reg-id=1;+sip.instance="{INSTANCE}"'
    resp = await send(h, register(contact, call_id="ob-2", cseq=1))
    assert resp.status == 200 and "Require" not in resp.headers
    plain = await send(h, register("<sip:1002@10.0.0.9>", call_id="ob-3", cseq=1,
                                   extra=("Supported: outbound",)))  # no reg-id: not an outbound binding
    assert plain.status == 200 and "Require" not in plain.headers


# ---- item 7 -----------------------------------------------------------------------------------------

async def test_default_cap_on_contacts_when_the_agent_sets_none() -> None:
    h = Harness()
    assert DEFAULT_MAX_CONTACTS == 10
    for n in range(DEFAULT_MAX_CONTACTS):
        assert (await send(h, register(f"<sip:1002@10.0.1.{n}>", call_id=f"cap-{n}", cseq=1))).status == 200
    over = await send(h, register("<sip:1002@10.0.2.1>", call_id="cap-x", cseq=1))
    assert over.status == 403 and "maximum of 10" in over.reason
    refresh = await send(h, register("<sip:1002@10.0.1.0>", call_id="cap-0", cseq=5))  # existing: allowed
    assert refresh.status == 200
