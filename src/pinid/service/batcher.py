"""Micro-batching: identification requests that arrive together run as one batch.

The CNN and the model answer a batch of pins in less time per pin than one pin at a time, so
under concurrent load the service answers more pins a second. A request that finds the worker
idle runs at once, alone: it never waits for company. Requests that arrive while a batch runs
queue, and the next batch takes them all (up to ``max_batch``); ``window_s`` more may be waited
before it, for requests on their way. Admission stays the pool's: each request holds one slot
from its arrival to its answer, and one over the pool's capacity gets :class:`PoolBusy`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pinid.service.pool import InferencePool

I = TypeVar("I")  # noqa: E741 -- a request
R = TypeVar("R")  # its result

MAX_WINDOW_S = 0.1
"""A longer wait than this would cost a request more than batching saves it."""


class MicroBatcher(Generic[I, R]):
    """Runs ``run_batch(items)`` in the pool for the requests that queued together;
    ``run_batch`` gives each item its result, or the exception that fails that item alone."""

    def __init__(
        self,
        pool: InferencePool,
        run_batch: Callable[[Sequence[I]], Sequence[R | Exception]],
        *,
        max_batch: int,
        window_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if not 0 <= window_s <= MAX_WINDOW_S:  # also refuses nan
            raise ValueError(f"window_s must be from 0 to {MAX_WINDOW_S}, not {window_s}")
        self.pool, self.max_batch, self.window_s = pool, max_batch, window_s
        self._run_batch = run_batch
        self._queued: deque[tuple[I, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None

    async def submit(self, item: I) -> R:
        """``item``'s result once its batch has run (its own exception raised), or
        :class:`~pinid.service.pool.PoolBusy` at once when every slot is taken."""
        with self.pool.slot():
            future = asyncio.get_running_loop().create_future()
            self._queued.append((item, future))
            if self._worker is None:
                self._worker = asyncio.create_task(self._drain())
            return await future

    async def _drain(self) -> None:
        """Batches until nothing is queued; only the first waits for no one."""
        try:
            first = True
            while self._queued:
                if not first and self.window_s and len(self._queued) < self.max_batch:
                    await asyncio.sleep(self.window_s)
                first = False
                batch = []
                while self._queued and len(batch) < self.max_batch:
                    item, future = self._queued.popleft()
                    if not future.done():  # else its client went away
                        batch.append((item, future))
                if batch:
                    await self._run([item for item, _ in batch], [f for _, f in batch])
        finally:
            self._worker = None

    async def _run(self, items: list[I], futures: list[asyncio.Future]) -> None:
        try:
            results = await self.pool.execute(self._run_batch, items)
        except Exception as exc:  # a fault of the batch as a whole: each request gets it
            results = [exc] * len(items)
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
