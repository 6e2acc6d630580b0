"""The connection table's admission policy (routr_ray/edge/connections.py): per-source cap, and when the table is
full, the idlest inbound connection of the heaviest source makes room for a source holding fewer."""

from __future__ import annotations

import asyncio

from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.transports.base import Connection, Flow, TransportCounters, TransportLimits, TransportName


class FakeConnection(Connection):
    def __init__(self, host: str, port: int, *, outbound: bool = False, last_activity: float = 0.0) -> None:
        flow = Flow(TransportName.TCP, host, port, "127.0.0.1", 5060, port)
        super().__init__(port, flow, outbound=outbound, limits=TransportLimits(), counters=TransportCounters())
        self.last_activity = last_activity
        self.aborted = False

    async def send(self, data: bytes) -> bool:
        return True

    def close(self) -> None:
        self.aborted = True

    def abort(self) -> None:
        self.aborted = True


def fill(table: ConnectionTable, host: str, n: int, start: int, **kw: object) -> list[FakeConnection]:
    conns = [FakeConnection(host, start + i, **kw) for i in range(n)]  # type: ignore[arg-type]
    for conn in conns:
        assert table.admit(host) is None
        table.add(conn)
    return conns


async def test_a_full_table_evicts_the_idlest_connection_of_the_heaviest_source() -> None:
    table = ConnectionTable(max_connections=6, max_connections_per_source=4)
    heavy = fill(table, "10.0.0.1", 4, 1000)
    light = fill(table, "10.0.0.2", 2, 2000)
    heavy[2].last_activity = -5.0  # the idlest of the heaviest
    assert table.admit("10.0.0.1") == "source"
    assert table.admit("10.0.0.3") is None  # a newcomer: 10.0.0.1 gives up its idlest connection
    assert heavy[2].aborted and table.evictions == 1 and len(table) == 5 and table.count_from("10.0.0.1") == 3
    table.add(FakeConnection("10.0.0.3", 3000))
    # 3 / 2 / 1: 10.0.0.2 would hold 3, as many as the heaviest: refused, nobody evicted
    assert table.admit("10.0.0.2") == "total" and table.evictions == 1
    assert table.admit("10.0.0.4") is None  # a newcomer again takes from the heaviest: 10.0.0.1 down to 2
    assert table.count_from("10.0.0.1") == 2 and table.evictions == 2
    table.add(FakeConnection("10.0.0.4", 4000))
    assert table.admit("10.0.0.5") is None  # 2 / 2 / 1 / 1: one of the two holding 2 gives one up
    assert table.evictions == 3
    assert all(table.count_from(f"10.0.0.{i}") >= 1 for i in range(1, 5))  # nobody lost its last one
    assert sum(c.aborted for c in light) <= 1


async def test_equal_shares_refuse_a_newcomer_instead_of_evicting() -> None:
    table = ConnectionTable(max_connections=4, max_connections_per_source=4)
    conns = [c for i in range(4) for c in fill(table, f"10.0.1.{i}", 1, 100 * i)]
    assert table.admit("10.0.2.1") == "total"  # every source holds 1: nobody gives up an only connection
    assert table.evictions == 0 and not any(c.aborted for c in conns)


async def test_outbound_and_protected_connections_are_never_evicted() -> None:
    table = ConnectionTable(max_connections=4, max_connections_per_source=4,
                            is_protected=lambda host: host == "10.0.0.9")
    outbound = [FakeConnection("10.0.0.1", 1000 + i, outbound=True) for i in range(2)]
    for conn in outbound:
        table.add(conn)
    fill(table, "10.0.0.9", 2, 2000)  # a trunk
    assert table.admit("10.0.0.5") == "total"
    assert table.evictions == 0
    await asyncio.sleep(0)


async def test_removing_connections_keeps_the_counts_right() -> None:
    table = ConnectionTable(max_connections=3, max_connections_per_source=3)
    a = fill(table, "10.0.0.1", 3, 1)
    for conn in a:
        table.remove(conn)
        table.remove(conn)  # twice is harmless (evicted, then its close seen)
    assert len(table) == 0 and table.count_from("10.0.0.1") == 0
    fill(table, "10.0.0.2", 2, 10)
    fill(table, "10.0.0.3", 1, 20)
    assert table.admit("10.0.0.4") is None and table.count_from("10.0.0.2") == 1
