"""Dynamic batching across concurrent requests, as Triton's dynamic batcher does.

Requests for one model queue up; the batcher takes up to ``max_batch_size`` of them, runs the
classifier once on the stacked batch and answers each request's future.

``max_queue_delay_s`` is how long the oldest request may wait for its batch to fill (Triton's
``max_queue_delay_microseconds``). At 0 (the default) the batcher is greedy: it never waits, it
takes whatever queued while the previous batch ran (or arrived in the same event-loop
iteration), so a lone request runs at once and under load batches form by themselves.
``max_batch_size`` 1 turns batching off.

``executor``: "inline" (the default) runs batches on the event loop, as a callback scheduled
after every request that arrived in the same loop iteration has been queued (no thread
hand-offs: the lowest latency and the largest batches for small models on few cores); "thread"
runs them on a batcher thread per model (onnxruntime releases the GIL, so the event loop keeps
receiving while a batch runs: the better choice for heavy models on many cores).

A full queue refuses new requests (``QueueFull``); a request whose deadline passed while queued
is dropped without being run (``Expired``).

A request is answered through its future (``submit``), or, on the server's per-frame path,
through a callback (``submit(..., done=fn)``: no future, no task wake-up); ``after_batch`` runs
on the event loop once every request of a batch has been answered (the server's batched metrics).
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Callable

import numpy as np


class BatcherError(Exception):
    pass


class QueueFull(BatcherError):
    pass


class Expired(BatcherError):
    pass


class Stopped(BatcherError):
    pass


class NonFiniteOutput(BatcherError):
    """The model's logits for this input are NaN or infinite: no probabilities to answer with."""


class BatchResult:
    """One request's answer (a plain slotted class: one is made per request)."""
    __slots__ = ("label", "top_index", "top_prob", "queue_s", "inference_s", "batch_size")

    def __init__(self, label: int, top_index: np.ndarray, top_prob: np.ndarray, queue_s: float,
                 inference_s: float, batch_size: int):
        self.label = label              # the most probable class
        self.top_index = top_index      # the k most probable classes, most probable first
        self.top_prob = top_prob
        self.queue_s = queue_s          # enqueue -> batch start
        self.inference_s = inference_s  # classifier run of the whole batch
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return (f"BatchResult(label={self.label}, queue_s={self.queue_s:.6f}, "
                f"inference_s={self.inference_s:.6f}, batch_size={self.batch_size})")


class _Item:
    __slots__ = ("x", "future", "done", "loop", "t_enqueue", "deadline")

    def __init__(self, x, future, done, loop, t_enqueue, deadline):
        self.x, self.future, self.done, self.loop = x, future, done, loop
        self.t_enqueue, self.deadline = t_enqueue, deadline

    def answer(self, value) -> None:
        """On the event loop: the callback, or the future's result or exception (unless the
        future was cancelled)."""
        if self.done is not None:
            self.done(value)
        elif not self.future.done():
            if isinstance(value, BaseException):
                self.future.set_exception(value)
            else:
                self.future.set_result(value)


def _resolve(answers, after_batch=None) -> None:
    """On the event loop: answer each item, then the batch hook."""
    for it, value in answers:
        it.answer(value)
    if after_batch is not None:
        after_batch()


def softmax_topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels [B], top-k indices [B, k], top-k probabilities [B, k]) of logits [B, K]."""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite logits: NaN rows, refused later
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
    k = min(k, p.shape[1])
    idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return idx[:, 0], idx, np.take_along_axis(p, idx, axis=1)


class DynamicBatcher:
    """One model's request queue and its worker thread."""

    def __init__(self, name: str, run: Callable[[np.ndarray], np.ndarray], max_batch_size: int = 64,
                 max_queue_delay_s: float = 0.0, max_queue_size: int = 4096, topk: int = 5,
                 on_batch: Callable[[int, float], None] | None = None, executor: str = "inline"):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if executor not in ("thread", "inline"):
            raise ValueError(f"executor must be 'thread' or 'inline', not {executor!r}")
        self.executor = executor
        self._scheduled = None  # inline: the pending flush (a Handle or TimerHandle)
        self.name = name
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max(0.0, max_queue_delay_s)
        self.max_queue_size = max_queue_size
        self.topk = topk
        self.on_batch = on_batch
        self.after_batch: Callable[[], None] | None = None
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self.batches = 0
        self.items = 0

    def start(self) -> "DynamicBatcher":
        if self.executor == "thread":
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        while self.executor == "inline" and self._queue:  # answer what is left
            self._flush()

    def qsize(self) -> int:
        return len(self._queue)

    def submit(self, x: np.ndarray, deadline: float | None = None,
               done: Callable[[object], None] | None = None) -> asyncio.Future | None:
        """Queue one input (C,); call on the event loop. ``deadline``: time.monotonic() value.
        Returns a future of its BatchResult, or (``done`` given) None and calls ``done`` on the
        event loop with the BatchResult or the exception (``done`` must not raise)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future() if done is None else None
        item = _Item(x, fut, done, loop, time.monotonic(), deadline)
        if self.executor == "inline":
            if self._stopping:
                raise Stopped(f"model {self.name!r} is shutting down")
            if len(self._queue) >= self.max_queue_size:
                raise QueueFull(f"model {self.name!r}: queue full ({self.max_queue_size} waiting)")
            self._queue.append(item)
            if len(self._queue) >= self.max_batch_size or self.max_queue_delay_s <= 0:
                if self._scheduled is None or isinstance(self._scheduled, asyncio.TimerHandle):
                    if self._scheduled is not None:
                        self._scheduled.cancel()
                    self._scheduled = loop.call_soon(self._flush)
            elif self._scheduled is None:
                self._scheduled = loop.call_later(self.max_queue_delay_s, self._flush)
            return fut
        with self._cond:
            if self._stopping:
                raise Stopped(f"model {self.name!r} is shutting down")
            if len(self._queue) >= self.max_queue_size:
                raise QueueFull(f"model {self.name!r}: queue full ({self.max_queue_size} waiting)")
            self._queue.append(item)
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch_size:
                self._cond.notify()
        return fut

    # -- inline executor (on the event loop) -----------------------------------------------------------
    def _flush(self) -> None:
        self._scheduled = None
        n = min(len(self._queue), self.max_batch_size)
        batch = [self._queue.popleft() for _ in range(n)]
        _resolve(self._execute(batch), self.after_batch)
        if self._queue and self._scheduled is None:
            loop = asyncio.get_event_loop()
            if len(self._queue) >= self.max_batch_size or self.max_queue_delay_s <= 0:
                self._scheduled = loop.call_soon(self._flush)
            else:
                left = self._queue[0].t_enqueue + self.max_queue_delay_s - time.monotonic()
                self._scheduled = loop.call_later(max(0.0, left), self._flush)

    # -- worker ---------------------------------------------------------------------------------
    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            if self.max_queue_delay_s > 0 and not self._stopping:
                until = self._queue[0].t_enqueue + self.max_queue_delay_s
                while len(self._queue) < self.max_batch_size and not self._stopping:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            n = min(len(self._queue), self.max_batch_size)
            return [self._queue.popleft() for _ in range(n)]

    def _execute(self, batch: list[_Item]) -> list:
        """Run one batch; (item, BatchResult or exception) for every item still wanted."""
        now = time.monotonic()
        live, answers = [], []
        for it in batch:
            if it.future is not None and it.future.cancelled():
                continue
            if it.deadline is not None and now >= it.deadline:
                answers.append((it, Expired("deadline exceeded while queued")))
            else:
                live.append(it)
        if not live:
            return answers
        t0 = time.perf_counter()
        try:
            xs = [it.x for it in live]
            if all(x.shape == xs[0].shape for x in xs):
                logits = self.run(np.stack(xs))
            else:  # inputs of different sizes (e.g. point clouds of different counts): one by one
                logits = np.concatenate([self.run(x[None]) for x in xs])
            t1 = time.perf_counter()
            labels, idx, prob = softmax_topk(np.asarray(logits, np.float32), self.topk)
        except Exception as e:  # a failing model run answers its batch, never kills the worker
            answers.extend((it, e) for it in live)
            return answers
        n, infer = len(live), t1 - t0
        finite = np.isfinite(prob).all(axis=1).tolist()
        labels = labels.tolist()
        for i, it in enumerate(live):
            if not finite[i]:  # the last guard: no NaN probability leaves the server
                answers.append((it, NonFiniteOutput("the model's output for this input is not finite "
                                                    "(input out of the model's range)")))
                continue
            answers.append((it, BatchResult(labels[i], idx[i], prob[i], now - it.t_enqueue, infer, n)))
        self.batches += 1
        self.items += n
        if self.on_batch is not None:
            self.on_batch(n, infer)
        return answers

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            by_loop: dict = {}
            for it, value in self._execute(batch):
                by_loop.setdefault(it.loop, []).append((it, value))
            for loop, pairs in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, pairs, self.after_batch)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
