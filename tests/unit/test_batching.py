from __future__ import annotations

import asyncio

import pytest

from routr_ray.util.batching import AdaptiveBatcher, BatchQueueFull, BatchSizeMismatch


class Recorder:
    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail = fail
        self.concurrent = 0
        self.max_concurrent = 0

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise self.fail
            return [i * 10 for i in items]
        finally:
            self.concurrent -= 1


async def test_idle_item_is_sent_at_once_alone() -> None:
    rec = Recorder()
    batcher = AdaptiveBatcher(rec, max_wait=10.0)
    assert await asyncio.wait_for(batcher.submit(3), 1.0) == 30
    assert rec.batches == [[3]]


async def test_items_arriving_during_a_call_are_gathered_into_one_call() -> None:
    rec = Recorder(delay=0.05)
    batcher = AdaptiveBatcher(rec, max_batch=64, max_wait=1.0)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert rec.batches[0] == [0]
    assert rec.batches[1] == list(range(1, 20))
    assert len(rec.batches) == 2


async def test_full_batch_is_sent_without_waiting_for_the_call_in_flight() -> None:
    rec = Recorder(delay=0.2)
    batcher = AdaptiveBatcher(rec, max_batch=4, max_wait=10.0, max_in_flight=3)
    tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(9)]
    await asyncio.sleep(0.05)
    assert rec.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(9)]


async def test_max_wait_bounds_the_delay_while_a_call_is_in_flight() -> None:
    rec = Recorder(delay=0.5)
    batcher = AdaptiveBatcher(rec, max_batch=64, max_wait=0.01, max_in_flight=2)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.1)
    assert rec.batches == [[1], [2]]
    assert rec.max_concurrent == 2
    await asyncio.gather(first, second)


async def test_in_flight_calls_are_capped() -> None:
    rec = Recorder(delay=0.02)
    batcher = AdaptiveBatcher(rec, max_batch=1, max_wait=0.0, max_in_flight=2)
    await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert rec.max_concurrent <= 2
    assert sorted(i for b in rec.batches for i in b) == list(range(10))


async def test_a_failing_call_fails_every_item_of_its_batch_only() -> None:
    rec = Recorder(delay=0.01, fail=ConnectionError("down"))
    batcher = AdaptiveBatcher(rec)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    rec.fail = None
    assert await batcher.submit(7) == 70


async def test_deadline_fails_the_batch_with_timeout() -> None:
    rec = Recorder(delay=5.0)
    batcher = AdaptiveBatcher(rec, timeout=0.05)
    with pytest.raises(TimeoutError):
        await batcher.submit(1)


async def test_wrong_result_count_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = AdaptiveBatcher(short)
    with pytest.raises(BatchSizeMismatch):
        await batcher.submit(1)


async def test_queue_is_bounded() -> None:
    rec = Recorder(delay=0.2)
    batcher = AdaptiveBatcher(rec, max_batch=1, max_in_flight=1, max_queue=2)
    tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(BatchQueueFull):
        await batcher.submit(99)
    await asyncio.gather(*tasks)
