"""Where the independent fits of training run (the C grid of each view, the cross-fitting
folds): in this process by default (the views' searches side by side, each one's fits one
after another), or on a Dask cluster
(:class:`pinid.models.distributed.OnCluster`). Either gives the same model: the callers decide
which fits are needed and in what order the results are read, so only the place changes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from pinid.models.lbfgs import quiet_line_search
from pinid.models.threads import blas_threads, one_thread, side_by_side

T = TypeVar("T")
R = TypeVar("R")


class Fits(Protocol):
    """Runs ``fn(item, *shared)`` for each item; ``shared`` are values from :meth:`share`."""

    def share(self, value: Any) -> Any:
        """``value`` (the training pins: large) made available to every fit, sent once."""

    def map(self, fn: Callable[..., T], items: Iterable, *shared: Any) -> Generator[T]:
        """The results in the order of ``items``. Closing the generator early gives up the
        fits not yet read."""

    def each(self, fn: Callable[[Any], T], items: Sequence) -> list[T]:
        """``fn(item)`` for each item, at once as far as this place allows: searches that
        each :meth:`map` their own fits (one per view)."""


class InProcess:
    """Each fit in this process when its result is read, so that a search that stops early
    fits nothing more, and one fit's models are let go before the search's next is fitted."""

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable[..., T], items: Iterable, *shared: Any) -> Generator[T]:
        return (fn(item, *shared) for item in items)

    def each(self, fn: Callable[[Any], T], items: Sequence) -> list[T]:
        return fits_side_by_side(fn, items)  # as many as BLAS may use threads, one each


def fits_side_by_side(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` of each item (independent fits, the longest first): where BLAS may use no
    more threads than there are fits, as many at once, each on one thread; with more threads,
    one after another, each on all of them. A fit's own products use two cores poorly (at the
    paper's scale a character view's fit ran 1.45 times faster on two threads than on one, an
    image view's 1.3, a word view's 1.05); two fits at once use both, and hold both fits'
    state (at 500 users x 30 pins training's peak RSS rose 22 %). A fit gives the same numbers
    on any thread count (:func:`pinid.models.threads.one_thread`).

    Warning filters are the process's and ``warnings.catch_warnings`` is not thread-safe: the
    solver's (:func:`pinid.models.lbfgs.quiet_line_search`) is set here once for all fits."""
    threads = blas_threads()  # read before one_thread, under which it is 1
    if threads > len(items):
        return [function(item) for item in items]
    with quiet_line_search(), one_thread():
        return side_by_side(function, items, threads)
