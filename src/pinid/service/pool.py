"""A bounded pool for CPU-bound identification, so the event loop never blocks on the CNN.

At most ``capacity`` jobs are admitted (running or waiting); one more is refused at once with
:class:`PoolBusy` instead of queuing without bound: under overload clients get a quick 503, the
server's memory stays flat and accepted requests keep their latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class PoolBusy(Exception):
    """Every slot of the pool is taken."""


class InferencePool:
    def __init__(self, capacity: int, threads: int = 1) -> None:
        if capacity < 1 or threads < 1:
            raise ValueError("capacity and threads must be at least 1")
        self.capacity = capacity
        self.admitted = 0
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pinid-infer")

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One admitted job while the block runs, or :class:`PoolBusy` if no slot is free."""
        if self.admitted >= self.capacity:
            raise PoolBusy
        self.admitted += 1  # only the event loop's thread touches the counter
        try:
            yield
        finally:
            self.admitted -= 1

    async def execute(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` in a pool thread for jobs admitted already (a micro-batch's)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` in a pool thread, or :class:`PoolBusy` if no slot is free."""
        with self.slot():
            return await self.execute(fn, *args)
