"""L-BFGS for smooth unconstrained problems with millions of parameters, in float32.

scipy's only L-BFGS is L-BFGS-B, whose bound-handling machinery runs on every iteration even
without bounds: on the character view's 3.3 million weights (23,400 pins) it took half of a
fit's time, more than the loss and gradient themselves. Unbounded, L-BFGS is the two-loop
recursion over the last few steps, here in NumPy, with scipy's Wolfe line search.

The iterate, the gradient and the stored steps are float32: the logistic loss computes its
products in float32 anyway, and every pass over the weights (the search's trial points, the
steps, the recursion) then moves half the bytes. Only the loss's value is summed in float64,
for the line search's comparisons and the relative-decrease test.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import saxpy

# the scalar search behind scipy.optimize.line_search, given the loss along the direction
# itself: the public function asks for the value and the slope at a point separately, which
# costs a comparison and a copy of every weight per trial to evaluate each point once
from scipy.optimize._linesearch import scalar_search_wolfe2

Loss = Callable[[np.ndarray], tuple[float, np.ndarray, bool]]


@dataclass
class Result:
    x: np.ndarray
    nit: int
    done: bool  # the loss said converged, or a step decreased it by less than ftol
    message: str


@contextmanager
def quiet_line_search() -> Iterator[None]:
    """scipy's warning of a failed line search silenced: the solver reports it itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The line search", RuntimeWarning)
        yield


def minimize_lbfgs(loss: Loss, x0: np.ndarray, max_iter: int, history: int,
                   ftol: float) -> Result:  # fmt: skip
    """Minimise ``loss`` from ``x0`` (float32): ``loss(x)`` gives the value, the gradient
    (float32) and whether ``x`` meets the caller's stopping rule. Stops at the first accepted
    iterate that meets it, when the relative decrease of one step is below ``ftol`` (L-BFGS-B's
    own test), when the line search fails from the gradient's direction, or after ``max_iter``
    steps."""
    x = np.asarray(x0, np.float32)
    value, gradient, converged = loss(x)
    if converged:
        return Result(x, 0, True, "converged")
    steps: deque = deque(maxlen=history)  # (s, y, 1 / y.s)
    for it in range(1, max_iter + 1):
        direction = _two_loop(gradient, steps)
        np.negative(direction, out=direction)
        if not steps:  # the first step: a unit step along the gradient's direction
            direction /= max(np.sqrt(_dot(direction, direction)), 1e-12)
        along = _Line(loss, x, direction)
        with quiet_line_search():  # a failed search is reported below
            alpha, _, _, slope = scalar_search_wolfe2(
                along.value, along.slope, value, None, _dot(gradient, direction), maxiter=50
            )
        if (alpha is None or slope is None) and steps:
            steps.clear()  # a direction the search could not use: again along the gradient
            continue
        if alpha is None or slope is None:
            return Result(x, it - 1, False, "the line search found no acceptable step")
        new_x, (new_value, new_gradient, converged) = along.at(alpha)
        s, y = new_x - x, new_gradient - gradient
        curvature = _dot(y, s)
        if curvature > 1e-12 * _dot(y, y):  # keep the update positive definite
            steps.append((s, y, 1.0 / curvature))
        decrease = (value - new_value) / max(abs(value), abs(new_value), 1.0)
        x, value, gradient = new_x, new_value, new_gradient
        if converged:
            return Result(x, it, True, "converged")
        if decrease <= ftol:
            return Result(x, it, True, "relative reduction of the loss below ftol")
    return Result(x, max_iter, False, "the iteration limit was reached")


class _Line:
    """The loss along ``x + alpha·direction``, each ``alpha`` evaluated once: the search asks
    for the value and then the slope at one point, and accepts the last point it evaluated."""

    def __init__(self, loss: Loss, x: np.ndarray, direction: np.ndarray) -> None:
        self.loss, self.x, self.direction = loss, x, direction
        self.alpha: float | None = None

    def at(self, alpha: float) -> tuple[np.ndarray, tuple[float, np.ndarray, bool]]:
        """The point at ``alpha`` and the loss there."""
        if alpha != self.alpha:
            self.point = self.x + np.float32(alpha) * self.direction
            self.alpha, self.result = alpha, self.loss(self.point)
        return self.point, self.result

    def value(self, alpha: float) -> float:
        return self.at(alpha)[1][0]

    def slope(self, alpha: float) -> float:
        return _dot(self.at(alpha)[1][1], self.direction)


def _two_loop(gradient: np.ndarray, steps: deque) -> np.ndarray:
    """The inverse-Hessian approximation times ``gradient`` (Nocedal & Wright, algorithm 7.4),
    scaled by the latest step's curvature, as a new array."""
    q = gradient.copy()
    alphas = []
    for s, y, rho in reversed(steps):  # in place (BLAS axpy): no temporary vector per step
        alpha = rho * _dot(s, q)
        q = saxpy(y, q, a=-alpha)
        alphas.append(alpha)
    if steps:
        s, y, rho = steps[-1]
        q *= 1.0 / (rho * _dot(y, y))
    for (s, y, rho), alpha in zip(steps, reversed(alphas), strict=True):
        q = saxpy(s, q, a=alpha - rho * _dot(y, q))
    return q


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a·b`` summed the same way on any number of threads (NumPy's own loop, not BLAS, whose
    products of vectors and matrices may split their sums by thread), so that a fit on a
    one-thread cluster worker takes the in-process fit's steps; as fast as BLAS's dot."""
    return float(np.einsum("i,i->", a, b))
