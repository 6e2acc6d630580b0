"""Location rules (issue 5 items 1-2) against the memory store.

`LocationRules` holds every rule test; it needs a `store_factory` fixture (shard id -> store, the
same backing data for the same shard id so a new service can reload). TestRulesOnMemory runs them
on MemoryStore; tests/integration/test_location_redis_rules.py runs the same class on a real Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from routr_ray.location import LocationError, LocationErrorCode, LocationService, shard_for_aor
from routr_ray.location.errors import unavailable
from routr_ray.location.stores import LocationStore, MemoryStore
from routr_ray.proto.gen import common_pb2, location_pb2

Backend = location_pb2.FindRoutesRequest.Backend
AOR = "sip:1001@sip.local"
POOL = "backend:voice"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def route(host: str, port: str = "5060", expires: int = 600, **fields: object) -> location_pb2.Route:
    return location_pb2.Route(host=host, port=port, expires=expires, **fields)  # type: ignore[arg-type]


def rr(affinity: bool = False) -> location_pb2.FindRoutesRequest.Backend:
    return Backend(ref="voice", algorithm=Backend.ROUND_ROBIN, with_session_affinity=affinity)


def least(affinity: bool = False) -> location_pb2.FindRoutesRequest.Backend:
    return Backend(ref="voice", algorithm=Backend.LEAST_SESSIONS, with_session_affinity=affinity)


def hosts(routes: list[location_pb2.Route]) -> list[str]:
    return [r.host for r in routes]


StoreFactory = Callable[[str], LocationStore]


class LocationRules:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def make_service(self, store_factory: StoreFactory, clock: FakeClock) -> Callable[..., LocationService]:
        def make(shard: str = "0", **options: object) -> LocationService:
            options.setdefault("sweep_interval", 0)
            return LocationService(store_factory(shard), clock=clock, **options)  # type: ignore[arg-type]

        return make

    @pytest.fixture
    def service(self, make_service: Callable[..., LocationService]) -> LocationService:
        return make_service()

    async def reloaded(self, make_service: Callable[..., LocationService], **options: object) -> LocationService:
        fresh = make_service(**options)
        await fresh.load()
        return fresh

    # ---- item 1: AORs ---------------------------------------------------------------------------

    async def test_aor_is_normalised_so_a_reregister_matches(self, service: LocationService) -> None:
        await service.add_route("SIP:1001@Sip.Local;transport=udp?subject=x", route("10.0.0.1"))
        await service.add_route("sip:1001@sip.local", route("10.0.0.1", session_count=3))
        found = await service.find_routes("sip:1001@SIP.LOCAL;lr")
        assert len(found) == 1 and found[0].session_count == 3

    @pytest.mark.parametrize("bad", ["tel:+15551234", "mailto:a@b", "1001@sip.local", "", "sip:", "sip:@host"])
    async def test_unsupported_or_malformed_aor_is_invalid_argument(self, service: LocationService, bad: str) -> None:
        with pytest.raises(LocationError) as info:
            await service.add_route(bad, route("10.0.0.1"))
        assert info.value.code is LocationErrorCode.INVALID_ARGUMENT
        with pytest.raises(LocationError) as info:
            await service.find_routes(bad)
        assert info.value.code is LocationErrorCode.INVALID_ARGUMENT

    async def test_unsupported_scheme_message_names_the_schemes(self, service: LocationService) -> None:
        with pytest.raises(LocationError, match=r"unsupported AOR scheme.*sip:, sips: or backend:"):
            await service.add_route("tel:+15551234", route("10.0.0.1"))

    async def test_sips_and_backend_schemes_are_accepted(self, service: LocationService) -> None:
        await service.add_route("sips:alice@example.com", route("10.0.0.1"))
        await service.add_route(POOL, route("10.0.0.2"))
        assert hosts(await service.find_routes("sips:alice@example.com")) == ["10.0.0.1"]
        assert hosts(await service.find_routes(POOL)) == ["10.0.0.2"]
        assert await service.find_routes("sip:alice@example.com") == []

    # ---- item 1: bindings -----------------------------------------------------------------------

    async def test_registered_on_is_stamped_only_when_left_zero(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1"))
        await service.add_route(AOR, route("10.0.0.2", registered_on=int(T0 * 1000) - 5000))
        by_host = {r.host: r.registered_on for r in await service.find_routes(AOR)}
        assert by_host == {"10.0.0.1": int(T0 * 1000), "10.0.0.2": int(T0 * 1000) - 5000}

    async def test_caller_route_is_not_mutated_and_results_are_copies(self, service: LocationService) -> None:
        mine = route("10.0.0.1")
        await service.add_route(AOR, mine)
        assert mine.registered_on == 0
        (found,) = await service.find_routes(AOR)
        found.host = "6.6.6.6"
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.1"]

    async def test_reregister_same_host_port_transport_updates(self, service: LocationService, clock: FakeClock) -> None:
        await service.add_route(AOR, route("Host.Example", transport=common_pb2.UDP, session_count=1))
        clock.advance(10)
        await service.add_route(AOR, route("host.example", transport=common_pb2.UDP, session_count=2))
        found = await service.find_routes(AOR)
        assert [(r.session_count, r.registered_on) for r in found] == [(2, int((T0 + 10) * 1000))]

    async def test_other_port_or_transport_is_another_binding(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1", transport=common_pb2.UDP))
        await service.add_route(AOR, route("10.0.0.1", transport=common_pb2.TCP))
        await service.add_route(AOR, route("10.0.0.1", port="5070", transport=common_pb2.UDP))
        assert len(await service.find_routes(AOR)) == 3
        assert service.binding_count == 3

    async def test_without_backend_all_live_routes_most_recent_first(
        self, service: LocationService, clock: FakeClock
    ) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(AOR, route(host))
            clock.advance(1)
        await service.add_route(AOR, route("10.0.0.1"))  # refresh moves it to the front
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.1", "10.0.0.3", "10.0.0.2"]

    async def test_same_millisecond_registrations_newest_first(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1"))
        await service.add_route(AOR, route("10.0.0.2"))
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2", "10.0.0.1"]

    async def test_expires_zero_removes_only_that_binding(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1"))
        await service.add_route(AOR, route("10.0.0.2"))
        await service.add_route(AOR, route("10.0.0.1", expires=0))
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2"]
        await service.add_route(AOR, route("10.9.9.9", expires=0))  # unknown: no-op, no error
        assert service.binding_count == 1

    async def test_negative_expires_and_missing_host_are_invalid(self, service: LocationService) -> None:
        with pytest.raises(LocationError, match="negative expires") as info:
            await service.add_route(AOR, route("10.0.0.1", expires=-1))
        assert info.value.code is LocationErrorCode.INVALID_ARGUMENT
        with pytest.raises(LocationError, match="no host"):
            await service.add_route(AOR, route(""))
        assert service.binding_count == 0

    async def test_expired_routes_are_never_returned(self, service: LocationService, clock: FakeClock) -> None:
        await service.add_route(AOR, route("10.0.0.1", expires=60))
        await service.add_route(AOR, route("10.0.0.2", expires=120))
        await service.add_route(POOL, route("10.0.0.3", expires=60))
        clock.advance(60)  # exactly at expiry: dead (Routr: expires - elapsed <= 0)
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2"]
        assert await service.find_routes(POOL, backend=rr()) == []
        assert await service.find_routes(POOL, call_id="c1", backend=rr(affinity=True)) == []

    async def test_already_expired_route_is_not_stored(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1", expires=10, registered_on=int(T0 * 1000) - 10_000))
        assert await service.find_routes(AOR) == []
        assert service.binding_count == 0

    async def test_sweep_removes_expired_bindings_from_memory_and_store(
        self, service: LocationService, clock: FakeClock, make_service: Callable[..., LocationService]
    ) -> None:
        await service.add_route(AOR, route("10.0.0.1", expires=60))
        await service.add_route(AOR, route("10.0.0.2", expires=600))
        await service.add_route("sip:1002@sip.local", route("10.0.0.3", expires=60))
        clock.advance(61)
        assert await service.sweep() == 2
        assert service.binding_count == 1 and service.aor_count == 1
        fresh = await self.reloaded(make_service)
        assert fresh.binding_count == 1

    async def test_find_triggers_a_periodic_sweep(
        self, make_service: Callable[..., LocationService], clock: FakeClock
    ) -> None:
        service = make_service(sweep_interval=30)
        await service.add_route(AOR, route("10.0.0.1", expires=10))
        await service.add_route("sip:1002@sip.local", route("10.0.0.2", expires=10))
        clock.advance(31)
        await service.find_routes(AOR)
        for _ in range(50):
            if service.binding_count == 0:
                break
            await asyncio.sleep(0.01)
        assert service.binding_count == 0

    # ---- binding identity: Contact URI, RFC 5626 instance + reg-id, source address ------------------

    async def test_several_contacts_from_one_address_are_several_bindings(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5:5060"))
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.8:5070"))
        found = await service.find_routes(AOR)
        assert sorted(r.contact_uri for r in found) == ["sip:1001@10.0.0.5:5060", "sip:1001@10.0.0.8:5070"]
        assert service.binding_count == 2

    async def test_same_contact_from_another_address_updates_the_binding(
        self, service: LocationService, clock: FakeClock
    ) -> None:
        await service.add_route(AOR, route("10.0.0.5", contact_uri="<sip:1001@PC.Example:5060;transport=UDP;ob>"))
        clock.advance(5)
        await service.add_route(AOR, route("10.0.0.9", contact_uri="sip:1001@pc.example:5060;ob;transport=udp"))
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.9"]

    async def test_contacts_differing_in_port_or_transport_param_are_different(
        self, service: LocationService
    ) -> None:
        for contact in ("sip:1001@pc:5060", "sip:1001@pc", "sip:1001@pc:5060;transport=tcp", "sips:1001@pc:5060"):
            await service.add_route(AOR, route("10.0.0.5", contact_uri=contact))
        assert service.binding_count == 4  # RFC 3261 §19.1.4: an explicit default port differs

    async def test_expires_zero_removes_only_the_named_contact(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5:5060"))
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5:5062"))
        await service.add_route(AOR, route("10.0.0.7", contact_uri="sip:1001@10.0.0.5:5062", expires=0))
        assert [r.contact_uri for r in await service.find_routes(AOR)] == ["sip:1001@10.0.0.5:5060"]

    async def test_outbound_instance_and_reg_id_replace_across_contacts(self, service: LocationService) -> None:
        uuid = '<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>'
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5:5060;ob",
                                           instance_id=uuid, reg_id=1))
        await service.add_route(AOR, route("10.0.0.6", contact_uri="sip:1001@10.0.0.6:6000;ob",
                                           instance_id=uuid.lower(), reg_id=1))  # new flow, same UA
        assert [r.contact_uri for r in await service.find_routes(AOR)] == ["sip:1001@10.0.0.6:6000;ob"]
        await service.add_route(AOR, route("10.0.0.6", contact_uri="sip:1001@10.0.0.6:6000;ob",
                                           instance_id=uuid, reg_id=2))  # RFC 5626 §6: a second flow
        assert service.binding_count == 2
        await service.add_route(AOR, route("10.0.0.6", contact_uri="sip:other@x", instance_id=uuid, reg_id=1,
                                           expires=0))
        assert [r.reg_id for r in await service.find_routes(AOR)] == [2]

    async def test_instance_without_reg_id_is_identified_by_contact(self, service: LocationService) -> None:
        uuid = "<urn:uuid:abc>"
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5", instance_id=uuid))
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.6", instance_id=uuid))
        assert service.binding_count == 2

    async def test_routr_client_without_contact_keeps_address_identity(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.5", session_count=1))
        await service.add_route(AOR, route("10.0.0.5", session_count=4))
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@10.0.0.5"))  # not the same binding
        assert sorted(r.session_count for r in await service.find_routes(AOR)) == [0, 4]

    async def test_max_contacts_counts_contact_bindings(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:a@10.0.0.5:1"), max_contacts=2)
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:a@10.0.0.5:2"), max_contacts=2)
        with pytest.raises(LocationError, match="maximum of 2"):
            await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:a@10.0.0.5:3"), max_contacts=2)
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:a@10.0.0.5:2", session_count=3),
                                max_contacts=2)  # a refresh at the limit
        assert service.binding_count == 2

    async def test_remove_routes_compares_contacts_as_uris(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@PC:5060;transport=TCP"))
        await service.add_route(AOR, route("10.0.0.5", contact_uri="sip:1001@pc:5062"))
        assert await service.remove_routes(AOR, ["<sip:1001@pc:5060;transport=tcp;ob>"]) == 1
        assert [r.contact_uri for r in await service.find_routes(AOR)] == ["sip:1001@pc:5062"]

    async def test_contact_bindings_survive_a_reload_and_rotate(
        self, service: LocationService, make_service: Callable[..., LocationService]
    ) -> None:
        for port in (5060, 5062, 5064):
            await service.add_route(POOL, route("10.0.0.5", contact_uri=f"sip:pbx@10.0.0.5:{port}"))
        assert service.binding_count == 3
        fresh = await self.reloaded(make_service)
        assert fresh.binding_count == 3
        picks = [(await fresh.find_routes(POOL, backend=rr()))[0].contact_uri for _ in range(3)]
        assert len(set(picks)) == 3
        pinned = await fresh.find_routes(POOL, call_id="c", backend=rr(True))
        again = await self.reloaded(make_service)
        assert await again.find_routes(POOL, call_id="c", backend=rr(True)) == pinned

    # ---- item 1: max_contacts ------------------------------------------------------------------

    async def test_max_contacts_exceeded_is_invalid_argument_naming_the_limit(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1"), max_contacts=2)
        await service.add_route(AOR, route("10.0.0.2"), max_contacts=2)
        with pytest.raises(LocationError, match="maximum of 2 allowed contacts") as info:
            await service.add_route(AOR, route("10.0.0.3"), max_contacts=2)
        assert info.value.code is LocationErrorCode.INVALID_ARGUMENT
        assert service.binding_count == 2

    async def test_reregister_at_the_limit_is_allowed(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1"), max_contacts=1)
        await service.add_route(AOR, route("10.0.0.1", session_count=9), max_contacts=1)
        assert [r.session_count for r in await service.find_routes(AOR)] == [9]

    @pytest.mark.parametrize("unlimited", [0, -1])
    async def test_zero_or_minus_one_means_unlimited(self, service: LocationService, unlimited: int) -> None:
        for i in range(20):
            await service.add_route(AOR, route(f"10.0.0.{i}"), max_contacts=unlimited)
        assert len(await service.find_routes(AOR)) == 20

    async def test_expired_contacts_do_not_count(self, service: LocationService, clock: FakeClock) -> None:
        await service.add_route(AOR, route("10.0.0.1", expires=10), max_contacts=1)
        clock.advance(11)
        await service.add_route(AOR, route("10.0.0.2"), max_contacts=1)
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2"]

    async def test_concurrent_registrations_never_exceed_the_limit(self, service: LocationService) -> None:
        results = await asyncio.gather(
            *(service.add_route(AOR, route(f"10.0.1.{i}"), max_contacts=3) for i in range(12)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 3
        assert all(isinstance(r, LocationError) for r in results if r is not None)
        assert service.binding_count == 3

    # ---- item 1: labels ------------------------------------------------------------------------

    async def test_labels_return_only_routes_containing_all_of_them(self, service: LocationService) -> None:
        await service.add_route(POOL, route("10.0.0.1", labels={"region": "eu", "tier": "gold"}))
        await service.add_route(POOL, route("10.0.0.2", labels={"region": "eu"}))
        await service.add_route(POOL, route("10.0.0.3", labels={"region": "us", "tier": "gold"}))
        await service.add_route(POOL, route("10.0.0.4"))
        assert sorted(hosts(await service.find_routes(POOL, labels={"region": "eu"}))) == ["10.0.0.1", "10.0.0.2"]
        assert hosts(await service.find_routes(POOL, labels={"region": "eu", "tier": "gold"})) == ["10.0.0.1"]
        assert await service.find_routes(POOL, labels={"region": "asia"}) == []
        assert len(await service.find_routes(POOL)) == 4
        picked = {r.host for _ in range(4) for r in await service.find_routes(POOL, backend=rr(), labels={"tier": "gold"})}
        assert picked == {"10.0.0.1", "10.0.0.3"}

    # ---- item 2: balancing ---------------------------------------------------------------------

    async def test_round_robin_rotates_fairly(self, service: LocationService, clock: FakeClock) -> None:
        for host in ("10.0.0.3", "10.0.0.1", "10.0.0.2"):
            await service.add_route(POOL, route(host))
        picks = [hosts(await service.find_routes(POOL, call_id=f"c{i}", backend=rr()))[0] for i in range(9)]
        assert picks[:3] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # stable order by route id
        assert picks == picks[:3] * 3
        clock.advance(5)
        await service.add_route(POOL, route("10.0.0.2"))  # a refresh does not reshuffle the rotation
        assert [hosts(await service.find_routes(POOL, backend=rr()))[0] for _ in range(3)] == picks[:3]

    async def test_round_robin_is_fair_across_interleaved_callers(self, service: LocationService) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        caller_a = [service.find_routes(POOL, call_id=f"a{i}", backend=rr()) for i in range(30)]
        caller_b = [service.find_routes(POOL, call_id=f"b{i}", backend=rr()) for i in range(30)]
        results = await asyncio.gather(*(c for pair in zip(caller_a, caller_b, strict=True) for c in pair))
        counts: dict[str, int] = {}
        for found in results:
            counts[found[0].host] = counts.get(found[0].host, 0) + 1
        assert counts == {"10.0.0.1": 20, "10.0.0.2": 20, "10.0.0.3": 20}

    async def test_avoided_contacts_are_picked_only_when_nothing_else_is_left(self, service: LocationService) -> None:
        """routr-ray extension (issue 15): a Peer's bindings that failed their OPTIONS keepalive."""
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host, contact_uri=f"sip:pbx@{host}:5060;transport=udp"))
        down = ["<SIP:pbx@10.0.0.2:5060;transport=UDP>"]  # any spelling of the same Contact (RFC 3261 §19.1.4)
        picks = [hosts(await service.find_routes(POOL, call_id=f"c{i}", backend=rr(), avoid_contact_uris=down))[0]
                 for i in range(6)]
        assert sorted(set(picks)) == ["10.0.0.1", "10.0.0.3"] and picks.count("10.0.0.1") == 3
        # a pin of the call and of the affinity value moves off a binding that went down
        pinned = hosts(await service.find_routes(POOL, call_id="x", session_affinity_ref="room", backend=rr(True)))
        moved = hosts(await service.find_routes(POOL, call_id="y", session_affinity_ref="room", backend=rr(True),
                                                avoid_contact_uris=[f"sip:pbx@{pinned[0]}:5060;transport=udp"]))
        assert moved != pinned
        everything = [f"sip:pbx@10.0.0.{i}:5060;transport=udp" for i in (1, 2, 3)]
        assert len(await service.find_routes(POOL, backend=rr(), avoid_contact_uris=everything)) == 1
        assert len(await service.find_routes(POOL, avoid_contact_uris=down)) == 3  # no backend: all of them

    async def test_round_robin_counter_survives_a_reload(
        self, service: LocationService, make_service: Callable[..., LocationService]
    ) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        assert hosts(await service.find_routes(POOL, backend=rr())) == ["10.0.0.1"]
        fresh = await self.reloaded(make_service)
        assert fresh.counter_of(POOL) == 1
        assert hosts(await fresh.find_routes(POOL, backend=rr())) == ["10.0.0.2"]

    async def test_least_sessions_picks_the_lowest_count(self, service: LocationService) -> None:
        await service.add_route(POOL, route("10.0.0.1", session_count=7))
        await service.add_route(POOL, route("10.0.0.2", session_count=2))
        await service.add_route(POOL, route("10.0.0.3", session_count=5))
        picks = {hosts(await service.find_routes(POOL, call_id=f"c{i}", backend=least()))[0] for i in range(5)}
        assert picks == {"10.0.0.2"}
        await service.add_route(POOL, route("10.0.0.2", session_count=9))  # reported at re-REGISTER
        assert hosts(await service.find_routes(POOL, backend=least())) == ["10.0.0.3"]

    async def test_least_sessions_ties_rotate_and_unreported_rank_last(self, service: LocationService) -> None:
        await service.add_route(POOL, route("10.0.0.1", session_count=1))
        await service.add_route(POOL, route("10.0.0.2", session_count=1))
        await service.add_route(POOL, route("10.0.0.3", session_count=-1))
        picks = [hosts(await service.find_routes(POOL, backend=least()))[0] for _ in range(4)]
        assert sorted(picks) == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]

    # ---- item 2: session affinity --------------------------------------------------------------

    async def test_affinity_holds_for_every_request_of_a_call(self, service: LocationService) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        for call in ("call-a", "call-b", "call-c"):
            picks = {hosts(await service.find_routes(POOL, call_id=call, backend=rr(True)))[0] for _ in range(100)}
            assert len(picks) == 1
        first_picks = {hosts(await service.find_routes(POOL, call_id=c, backend=rr(True)))[0] for c in ("call-a", "call-b", "call-c")}
        assert len(first_picks) == 3  # new calls still rotate

    async def test_affinity_ref_pins_different_calls_together(self, service: LocationService) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        picks = {
            hosts(await service.find_routes(POOL, call_id=f"call-{i}", session_affinity_ref="room-7", backend=rr(True)))[0]
            for i in range(20)
        }
        assert len(picks) == 1
        other = hosts(await service.find_routes(POOL, call_id="x", session_affinity_ref="room-8", backend=rr(True)))
        assert other != list(picks)  # a new room takes the next route in the rotation

    async def test_a_call_keeps_its_route_even_if_its_ref_points_elsewhere(self, service: LocationService) -> None:
        for host in ("10.0.0.1", "10.0.0.2"):
            await service.add_route(POOL, route(host))
        first = await service.find_routes(POOL, call_id="c1", backend=rr(True))
        room = await service.find_routes(POOL, call_id="c2", session_affinity_ref="r", backend=rr(True))
        assert first != room
        assert await service.find_routes(POOL, call_id="c1", session_affinity_ref="r", backend=rr(True)) == first

    async def test_affinity_ends_with_the_route(self, service: LocationService, clock: FakeClock) -> None:
        await service.add_route(POOL, route("10.0.0.1", expires=60))
        await service.add_route(POOL, route("10.0.0.2", expires=600))
        pinned = hosts(await service.find_routes(POOL, call_id="c", backend=rr(True)))
        assert pinned == ["10.0.0.1"]
        clock.advance(60)
        assert hosts(await service.find_routes(POOL, call_id="c", backend=rr(True))) == ["10.0.0.2"]
        await service.add_route(POOL, route("10.0.0.2", expires=0))
        assert await service.find_routes(POOL, call_id="c", backend=rr(True)) == []

    async def test_affinity_entries_expire_after_the_ttl(
        self, make_service: Callable[..., LocationService], clock: FakeClock
    ) -> None:
        service = make_service(affinity_ttl=100)
        for host in ("10.0.0.1", "10.0.0.2"):
            await service.add_route(POOL, route(host, expires=3600))
        pinned = hosts(await service.find_routes(POOL, call_id="c", backend=rr(True)))
        clock.advance(101)
        assert hosts(await service.find_routes(POOL, call_id="c", backend=rr(True))) != pinned
        await service.sweep()
        assert service.affinity_count == 1  # the re-pinned entry only

    async def test_affinity_in_use_is_refreshed(self, make_service: Callable[..., LocationService], clock: FakeClock) -> None:
        service = make_service(affinity_ttl=100)
        for host in ("10.0.0.1", "10.0.0.2"):
            await service.add_route(POOL, route(host, expires=3600))
        pinned = hosts(await service.find_routes(POOL, call_id="c", backend=rr(True)))
        for _ in range(5):  # used every 60 s for 300 s: longer than the TTL, still pinned
            clock.advance(60)
            assert hosts(await service.find_routes(POOL, call_id="c", backend=rr(True))) == pinned

    async def test_affinity_survives_a_reload(
        self, service: LocationService, make_service: Callable[..., LocationService]
    ) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        await service.find_routes(POOL, backend=rr())
        pinned = hosts(await service.find_routes(POOL, call_id="c", session_affinity_ref="room", backend=rr(True)))
        fresh = await self.reloaded(make_service)
        assert hosts(await fresh.find_routes(POOL, call_id="c", backend=rr(True))) == pinned
        assert hosts(await fresh.find_routes(POOL, call_id="other", session_affinity_ref="room", backend=rr(True))) == pinned

    async def test_affinity_is_scoped_by_aor(self, service: LocationService) -> None:
        await service.add_route("backend:a", route("10.0.0.1"))
        await service.add_route("backend:b", route("10.0.0.2"))
        a = await service.find_routes("backend:a", call_id="same", session_affinity_ref="room", backend=rr(True))
        b = await service.find_routes("backend:b", call_id="same", session_affinity_ref="room", backend=rr(True))
        assert hosts(a) == ["10.0.0.1"] and hosts(b) == ["10.0.0.2"]

    async def test_concurrent_first_requests_of_a_call_agree(self, service: LocationService) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(POOL, route(host))
        results = await asyncio.gather(*(service.find_routes(POOL, call_id="c", backend=rr(True)) for _ in range(20)))
        assert len({r[0].host for r in results}) == 1

    # ---- RemoveRoutes -------------------------------------------------------------------------

    async def test_remove_routes_removes_bindings_counter_and_affinity(
        self, service: LocationService, make_service: Callable[..., LocationService]
    ) -> None:
        for host in ("10.0.0.1", "10.0.0.2"):
            await service.add_route(POOL, route(host))
        await service.find_routes(POOL, call_id="c", backend=rr(True))
        await service.add_route(AOR, route("10.0.0.9"))
        assert await service.remove_routes("BACKEND:voice") == 2
        assert await service.find_routes(POOL) == []
        assert service.counter_of(POOL) == 0 and service.affinity_count == 0
        fresh = await self.reloaded(make_service)
        assert await fresh.find_routes(POOL) == [] and hosts(await fresh.find_routes(AOR)) == ["10.0.0.9"]
        assert fresh.affinity_count == 0 and fresh.counter_of(POOL) == 0
        assert await service.remove_routes(POOL) == 0

    async def test_remove_routes_by_contact_uri(self, service: LocationService) -> None:
        await service.add_route(AOR, route("10.0.0.1", contact_uri="sip:1001@10.0.0.1"))
        await service.add_route(AOR, route("10.0.0.2", contact_uri="sip:1001@10.0.0.2"))
        request = location_pb2.RemoveRoutesRequest(aor=AOR, contact_uris=["sip:1001@10.0.0.1", "sip:nobody@x"])
        assert await service.handle_remove_routes(request) == 1
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2"]

    # ---- reload and protobuf helpers ----------------------------------------------------------

    async def test_reload_sees_every_live_binding(
        self, service: LocationService, clock: FakeClock, make_service: Callable[..., LocationService]
    ) -> None:
        for i in range(50):
            await service.add_route(f"sip:u{i}@sip.local", route(f"10.0.{i}.1", labels={"n": str(i)}))
        await service.add_route("sip:short@sip.local", route("10.9.9.9", expires=5))
        clock.advance(6)
        fresh = await self.reloaded(make_service)
        assert fresh.binding_count == 50
        found = await fresh.find_routes("sip:u7@sip.local")
        assert hosts(found) == ["10.0.7.1"] and dict(found[0].labels) == {"n": "7"}
        assert await fresh.find_routes("sip:short@sip.local") == []

    async def test_reload_keeps_most_recent_first(
        self, service: LocationService, clock: FakeClock, make_service: Callable[..., LocationService]
    ) -> None:
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            await service.add_route(AOR, route(host))
            clock.advance(1)
        fresh = await self.reloaded(make_service)
        assert hosts(await fresh.find_routes(AOR)) == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]

    async def test_request_message_helpers(self, service: LocationService) -> None:
        await service.handle_add_route(location_pb2.AddRouteRequest(aor=POOL, route=route("10.0.0.1"), max_contacts=1))
        with pytest.raises(LocationError, match="maximum of 1"):
            await service.handle_add_route(location_pb2.AddRouteRequest(aor=POOL, route=route("10.0.0.2"), max_contacts=1))
        with pytest.raises(LocationError, match="no host"):
            await service.handle_add_route(location_pb2.AddRouteRequest(aor=POOL))
        request = location_pb2.FindRoutesRequest(aor=POOL, call_id="c", backend=rr(True))
        response = await service.handle_find_routes(request)
        assert isinstance(response, location_pb2.FindRoutesResponse) and hosts(list(response.routes)) == ["10.0.0.1"]

    # ---- sharding -----------------------------------------------------------------------------

    async def test_shard_refuses_an_aor_it_does_not_own(self, make_service: Callable[..., LocationService]) -> None:
        aors = [f"sip:user{i}@sip.local" for i in range(40)]
        owned = [a for a in aors if shard_for_aor(a, 2) == 0]
        foreign = [a for a in aors if shard_for_aor(a, 2) == 1]
        service = make_service(shard_index=0, shard_count=2)
        await service.add_route(owned[0], route("10.0.0.1"))
        with pytest.raises(LocationError, match="belongs to location shard 1 of 2") as info:
            await service.add_route(foreign[0], route("10.0.0.1"))
        assert info.value.code is LocationErrorCode.FAILED_PRECONDITION

    async def test_rebalance_after_the_shard_count_grows(
        self, make_service: Callable[..., LocationService]
    ) -> None:
        aors = [f"sip:user{i}@sip.local" for i in range(60)]
        single = make_service("0")  # one shard owned everything
        for i, aor in enumerate(aors):
            await single.add_route(aor, route(f"10.0.{i}.1"))
        shard0 = make_service("0", shard_index=0, shard_count=2)
        assert await shard0.load() == sum(shard_for_aor(a, 2) == 0 for a in aors)
        shard1 = make_service("1", shard_index=1, shard_count=2)
        moved = await shard1.load(rebalance=True)
        if not shard0.store.durable:  # memory stores are per process: nothing to adopt
            assert moved == 0
            return
        assert moved == sum(shard_for_aor(a, 2) == 1 for a in aors) > 0
        for aor in aors:
            owner = shard0 if shard_for_aor(aor, 2) == 0 else shard1
            assert len(await owner.find_routes(aor)) == 1
        again = make_service("1", shard_index=1, shard_count=2)
        assert await again.load(rebalance=False) == moved  # adopted under its own shard id

    async def test_a_changed_shard_count_rebalances_by_itself(
        self, make_service: Callable[..., LocationService]
    ) -> None:
        aors = [f"sip:user{i}@sip.local" for i in range(90)]
        old = [make_service(str(i), shard_index=i, shard_count=2) for i in range(2)]
        for service in old:
            await service.load()
        for i, aor in enumerate(aors):
            await old[shard_for_aor(aor, 2)].add_route(aor, route(f"10.0.{i}.1"))
        new = [make_service(str(i), shard_index=i, shard_count=3) for i in range(3)]
        loaded = [await service.load() for service in new]  # restart with N=3, no flag
        if not new[0].store.durable:
            assert loaded[2] == 0
            return
        assert sum(loaded) == len(aors) and loaded[2] > 0
        for aor in aors:
            assert len(await new[shard_for_aor(aor, 3)].find_routes(aor)) == 1
        restarted = [make_service(str(i), shard_index=i, shard_count=3) for i in range(3)]
        assert [await service.load() for service in restarted] == loaded  # same N: own slice only


class TestRulesOnMemory(LocationRules):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        stores: dict[str, MemoryStore] = {}
        return lambda shard: stores.setdefault(shard, MemoryStore(shard))


class FlakyStore(MemoryStore):
    """A memory store whose writes fail while `down` (how the service sees a dead Redis)."""

    def __init__(self) -> None:
        super().__init__("0")
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise unavailable("location store unavailable (test)")

    async def put_binding(self, *args: object, **kwargs: object) -> None:
        self._check()
        await super().put_binding(*args, **kwargs)  # type: ignore[arg-type]

    async def delete_binding(self, *args: object, **kwargs: object) -> None:
        self._check()
        await super().delete_binding(*args, **kwargs)  # type: ignore[arg-type]

    async def put_counter(self, *args: object, **kwargs: object) -> None:
        self._check()
        await super().put_counter(*args, **kwargs)  # type: ignore[arg-type]

    async def put_affinities(self, *args: object, **kwargs: object) -> None:
        self._check()
        await super().put_affinities(*args, **kwargs)  # type: ignore[arg-type]

    async def delete_aor(self, *args: object, **kwargs: object) -> None:
        self._check()
        await super().delete_aor(*args, **kwargs)  # type: ignore[arg-type]


class TestStoreFailures:
    @pytest.fixture
    def store(self) -> FlakyStore:
        return FlakyStore()

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def service(self, store: FlakyStore, clock: FakeClock) -> LocationService:
        return LocationService(store, clock=clock, sweep_interval=0)

    async def test_failed_write_changes_nothing_and_is_unavailable(self, service: LocationService, store: FlakyStore) -> None:
        await service.add_route(AOR, route("10.0.0.1"))
        store.down = True
        for call in (
            service.add_route(AOR, route("10.0.0.2")),
            service.add_route(AOR, route("10.0.0.1", expires=0)),
            service.remove_routes(AOR),
        ):
            with pytest.raises(LocationError) as info:
                await call
            assert info.value.code is LocationErrorCode.UNAVAILABLE
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.1"]  # reads without a backend still work
        store.down = False
        await service.add_route(AOR, route("10.0.0.2"))
        assert len(await service.find_routes(AOR)) == 2

    async def test_balancing_needs_the_store(self, service: LocationService, store: FlakyStore) -> None:
        await service.add_route(POOL, route("10.0.0.1"))
        store.down = True
        with pytest.raises(LocationError) as info:
            await service.find_routes(POOL, backend=rr())
        assert info.value.code is LocationErrorCode.UNAVAILABLE
        with pytest.raises(LocationError):
            await service.find_routes(POOL, call_id="c", backend=rr(True))
        assert service.affinity_count == 0

    async def test_sweep_survives_an_unavailable_store(
        self, service: LocationService, store: FlakyStore, clock: FakeClock
    ) -> None:
        await service.add_route(AOR, route("10.0.0.1", expires=10))
        await service.add_route(AOR, route("10.0.0.2", expires=100))
        store.down = True
        clock.advance(11)
        assert await service.sweep() == 1
        assert hosts(await service.find_routes(AOR)) == ["10.0.0.2"]


def test_service_rejects_inconsistent_shard_options() -> None:
    with pytest.raises(ValueError):
        LocationService(shard_index=0)
    with pytest.raises(ValueError):
        LocationService(shard_index=2, shard_count=2)
    with pytest.raises(ValueError):
        LocationService(affinity_ttl=0)
