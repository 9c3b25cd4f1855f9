"""How many threads NumPy's BLAS may use, and work split across that many: the models' own
parallel loops (a fit's products, the candidate search) use as many threads as BLAS would, so
a limit set for BLAS (``OMP_NUM_THREADS``, threadpoolctl) limits them too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import cache
from typing import TypeVar

from threadpoolctl import ThreadpoolController

T = TypeVar("T")
R = TypeVar("R")


@cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded, found once: finding them took longer than a pin's search."""
    return ThreadpoolController()


def blas_threads() -> int:
    """Threads BLAS may use now (1 when none is loaded)."""
    return max([lib["num_threads"] for lib in _blas().info() if lib["user_api"] == "blas"],
               default=1)  # fmt: skip


def one_thread() -> AbstractContextManager:
    """A block in which BLAS uses one thread (the process's limit, for the pthreads OpenBLAS
    of NumPy's and SciPy's wheels). For many small products side by side, which BLAS's own
    threads slow down; and where numbers must not depend on the thread count: a product's or a
    decomposition's rounding may (1e-11 for a covariance's eigenvectors), which a fit's
    iterations amplify (4e-6 in its weights), so a fit on a one-thread cluster worker would
    differ from the in-process one. Those numbers are made on one thread, or in fixed blocks
    of one thread each, side by side."""
    return _blas().limit(limits=1)


def side_by_side(function: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``function`` of each item, on up to ``threads`` threads (in order, here, for one). If
    one fails (or the wait is interrupted) the items not yet started are given up."""
    if len(items) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(items))) as pool:
            futures = [pool.submit(function, item) for item in items]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return [function(item) for item in items]
