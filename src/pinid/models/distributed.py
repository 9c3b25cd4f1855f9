"""Training's independent fits (:mod:`pinid.models.fits`) as tasks on a Dask cluster.

The training pins are sent to every worker once (scattered, broadcast), not with each task, and
stay there while the training runs; each task names them. A worker killed mid-fit loses nothing
but its fit: the scheduler runs that task again on another worker (up to Dask's
``distributed.scheduler.allowed-failures``, 3), which holds the pins too. A fit gives the same
numbers wherever it runs, so the model is the in-process one (within BLAS rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

from distributed import Client, Future, KilledWorker, get_worker
from distributed.client import FutureCancelledError
from distributed.comm.addressing import get_address_host
from threadpoolctl import threadpool_limits

from pinid.errors import PinidError
from pinid.features.distributed import threads_by_host
from pinid.models.threads import side_by_side

T = TypeVar("T")


class OnCluster:
    """Fits as tasks of ``client``'s cluster, every one submitted at once: the caller reads
    the results in order and closing the iterator cancels those it did not read.

    Each task uses as many BLAS threads as its machine has cores per Dask thread there (Dask
    starts workers with one), so that one worker per machine uses the whole machine.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.threads = threads_by_host(client)

    def share(self, value: Any) -> Future:
        [future] = self.client.scatter([value], broadcast=True, hash=False)
        return future

    def map(self, fn: Callable[..., T], items: Iterable, *shared: Any) -> Generator[T]:
        futures = [
            self.client.submit(_run, fn, item, *shared, threads=self.threads, pure=False)
            for item in items
        ]
        return _results(self.client, futures)

    def each(self, fn: Callable[[Any], T], items: Sequence) -> list[T]:
        return side_by_side(fn, items, len(items))  # every search's fits submitted at once


def _results(client: Client, futures: list[Future]) -> Generator:
    try:
        for future in futures:
            yield future.result()
    except (KilledWorker, FutureCancelledError) as exc:  # workers kept dying; scheduler gone
        raise PinidError(f"the cluster gave up: {str(exc).splitlines()[0]}") from None
    finally:
        client.cancel(futures)  # no-op for those read; the rest are not needed


def _run(fn: Callable[..., T], item: Any, *shared: Any, threads: dict[str, int]) -> T:
    """On a worker: ``fn(item, *shared)`` with its machine's share of BLAS threads."""
    host = get_address_host(get_worker().address)
    with threadpool_limits(threads.get(host) or 1):
        return fn(item, *shared)
