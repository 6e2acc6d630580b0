"""The store of answered non-INVITE UDP transactions (routr_ray/edge/completed.py, RFC 3261 §17.2.2)."""

from __future__ import annotations

import pytest

from routr_ray.edge.completed import CompletedTransactions
from tests.unit.test_edge_guards import Clock


def test_a_record_lives_for_the_lifetime_then_goes() -> None:
    clock = Clock()
    store = CompletedTransactions(32.0, clock)
    store.add("k1", ("127.0.0.1", 5060), b"SIP/2.0 200 OK", 200, "REGISTER")
    clock.now += 31.9
    record = store.get("k1")
    assert record is not None and record.data == b"SIP/2.0 200 OK" and record.status == 200
    clock.now += 0.1
    assert store.get("k1") is None
    assert len(store) == 0


def test_expired_records_are_trimmed_on_insert_in_fifo_order() -> None:
    clock = Clock()
    store = CompletedTransactions(10.0, clock)
    for i in range(5):
        store.add(f"k{i}", None, b"x", 200, "BYE")
        clock.now += 1.0
    clock.now = 1000.0 + 12.5  # k0, k1 and k2 expired
    store.add("late", None, b"y", 200, "BYE")
    assert len(store) == 3
    assert store.get("k2") is None and store.get("k3") is not None


def test_a_full_store_evicts_the_oldest_record() -> None:
    clock = Clock()
    store = CompletedTransactions(10.0, clock, max_size=2)
    store.add("a", None, b"1", 200, "MESSAGE")
    store.add("b", None, b"2", 200, "MESSAGE")
    store.add("c", None, b"3", 200, "MESSAGE")
    assert store.get("a") is None and store.get("b") is not None and store.get("c") is not None
    assert store.evicted == 1


def test_re_adding_a_key_keeps_the_newer_record_when_the_old_deadline_passes() -> None:
    clock = Clock()
    store = CompletedTransactions(10.0, clock)
    store.add("k", None, b"old", 200, "OPTIONS")
    clock.now += 5.0
    store.add("k", None, b"new", 200, "OPTIONS")
    clock.now += 6.0  # the first deadline passed, the second did not
    store.add("other", None, b"z", 200, "OPTIONS")
    record = store.get("k")
    assert record is not None and record.data == b"new"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        CompletedTransactions(-1.0, Clock())
    with pytest.raises(ValueError):
        CompletedTransactions(1.0, Clock(), max_size=0)
