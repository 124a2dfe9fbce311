"""The dynamic batcher in-process: batches form under concurrency, answers match unbatched runs,
full queues refuse, expired requests are never run, a failing model answers with its error."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from cloud_server.batcher import DynamicBatcher, Expired, QueueFull, softmax_topk

W = np.random.default_rng(0).normal(size=(16, 40)).astype(np.float32)


def _model(calls):
    def run(x):
        calls.append(len(x))
        return x @ W
    return run


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_concurrent_requests_are_batched_and_answered_right(executor):
    calls: list[int] = []
    xs = np.random.default_rng(1).normal(size=(100, 16)).astype(np.float32)

    async def main():
        b = DynamicBatcher("m", _model(calls), max_batch_size=32, executor=executor).start()
        try:
            return await asyncio.gather(*(b.submit(x) for x in xs))
        finally:
            b.stop()

    results = asyncio.run(main())
    labels, idx, prob = softmax_topk(xs @ W, 5)
    assert [r.label for r in results] == labels.tolist()
    for r, i, p in zip(results, idx, prob):
        np.testing.assert_array_equal(r.top_index, i)
        np.testing.assert_allclose(r.top_prob, p, rtol=1e-5)
    assert sum(calls) == 100 and max(calls) <= 32 and len(calls) < 100   # batched, within the limit
    assert all(r.batch_size in calls for r in results)


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_queue_delay_fills_batches_and_deadlines_drop_requests(executor):
    calls: list[int] = []

    async def main():
        # a full batch runs at once: with a one-minute queue delay it still answers (no timing
        # threshold: waiting for the delay would hit wait_for's 30 s)
        b = DynamicBatcher("m", _model(calls), max_batch_size=4, max_queue_delay_s=60, executor=executor).start()
        try:
            full = await asyncio.wait_for(
                asyncio.gather(*(b.submit(np.ones(16, np.float32)) for _ in range(4))), timeout=30)
            assert all(r.batch_size == 4 for r in full)
        finally:
            b.stop()
        b = DynamicBatcher("m", _model(calls), max_batch_size=4, max_queue_delay_s=0.2, executor=executor).start()
        try:
            with pytest.raises(Expired):   # queued alone for 0.2 s, its deadline is at 0.05 s
                await b.submit(np.ones(16, np.float32), deadline=time.monotonic() + 0.05)
            lone = await b.submit(np.ones(16, np.float32))
            assert lone.batch_size == 1 and lone.queue_s >= 0.15
        finally:
            b.stop()

    asyncio.run(main())
    assert calls == [4, 1]


def test_full_queue_and_failing_model():
    async def main():
        b = DynamicBatcher("m", _model([]), max_batch_size=1, max_queue_size=2, max_queue_delay_s=0.5,
                           executor="inline").start()
        futs = [b.submit(np.ones(16, np.float32)) for _ in range(2)]
        with pytest.raises(QueueFull):
            b.submit(np.ones(16, np.float32))
        b.stop()
        assert all(f.done() for f in futs)

        def broken(x):
            raise RuntimeError("model exploded")
        b = DynamicBatcher("m", broken, executor="thread").start()
        with pytest.raises(RuntimeError, match="exploded"):
            await b.submit(np.ones(16, np.float32))
        assert (await asyncio.gather(b.submit(np.ones(16, np.float32)), return_exceptions=True))[0].args
        b.stop()

    asyncio.run(main())
