"""A logistic regression for many users: each training pin's softmax taken over a shortlist of
users rather than all of them.

The image view's regression costs pins x users x features per product: 1e11 multiply-adds at
2,000 users x 30 pins, 2.6e12 at 10,000. Most users are nothing like a given pin, and their
terms in its softmax are near zero; the ones that shape the weights are the users it could be
mistaken for. So each pin's loss is its log-loss among its own user and the users whose
centroids are most like it (cosine, whitened features: :data:`SHORTLIST` of them), and a
product costs pins x their shortlists' union x features (:class:`_Block`). The model is the
same linear softmax over every user (``coef_``, ``intercept_``), with the regression's L2
penalty and stopping rule, so it answers, is saved and loads as the regression does. Measured
at 2,000 users x 30 pins (validation pins, C = 100): accuracy 42.91 % against the full
regression's 41.36, recall@10 95.54 against 96.20 %, fitted in 36.9 s against 103.4 s
(docs/performance.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_X_y

from pinid.models.logistic import (
    PreconditionedLogisticRegression,
    SoftmaxClassifier,
    _row_blocks,
    _squared_norm,
    _stacked,
    _times,
    _whitener,
    capped_tolerance,
    log_loss_into_gradient,
    solve_from_zero,
    user_sums,
)
from pinid.models.threads import blas_threads, one_thread, side_by_side

SHORTLIST = 32
"""Users in each training pin's softmax, its own among them."""
SHORTLIST_ABOVE = 1_000
"""Users above which the softmax runs over shortlists. A count of users, not a size of the
product, so that the C search, the cross-fitting folds and the final fit (fewer or more pins)
all fit the same kind of model; the full product at 1,000 users x 20 training pins holds 2.6e10
multiply-adds of 1,280 features (1e11 at 2,000 users, 7e9 at the paper's 117)."""
BLOCK_PINS = 32
"""Pins scored together (:class:`_Block`), those of the same nearest users: the union of
their shortlists held 600 users at 2,000 users (1,990 for blocks of 512 pins), and blocks of
32 fitted faster than of 16 or 64."""
PARTS = 4
"""Parts of the blocks whose gradients are summed apart (one thread each), then in order."""
SCORED = 1 << 23
"""Pin x user centroid scores computed at once while shortlisting."""


class ShortlistLogisticRegression(SoftmaxClassifier):
    """Multinomial logistic regression whose training softmax runs over each pin's shortlist
    (dense features). Its objective: the mean log-loss of each pin among its shortlist plus
    ``|W|² / (2·C·n)``, solved as :class:`~pinid.models.logistic.PreconditionedLogisticRegression`
    solves the full one (L-BFGS on whitened features), stopped by the same rule. With at
    most ``full_up_to`` users (None: :data:`SHORTLIST_ABOVE`) it is that regression;
    ``shortlist`` users in each pin's softmax (None: :data:`SHORTLIST`).

    Attributes
    ----------
    classes_, coef_, intercept_, n_iter_ :
        As the regression's; ``coef_`` (n_classes, n_features) feature-major.
    """

    def __init__(self, C: float = 1.0, shortlist: int | None = None, tol: float = 1e-4,
                 max_iter: int = 1000, full_up_to: int | None = None) -> None:  # fmt: skip
        self.C = C
        self.shortlist = shortlist
        self.tol = tol
        self.max_iter = max_iter
        self.full_up_to = full_up_to

    def fit(self, X, y: np.ndarray) -> ShortlistLogisticRegression:
        X, y = check_X_y(X, y, dtype=np.float32, order="C")  # finite, dense
        self.classes_, labels = np.unique(y, return_inverse=True)
        n, d = X.shape
        k = len(self.classes_)
        if k < 2:
            raise ValueError("need two or more classes")
        if k <= (SHORTLIST_ABOVE if self.full_up_to is None else self.full_up_to):
            full = PreconditionedLogisticRegression(self.C, self.tol, self.max_iter).fit(X, y)
            self.coef_, self.intercept_, self.n_iter_ = full.coef_, full.intercept_, full.n_iter_
            self.n_features_in_ = d
            return self
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        P = _whitener(X, mean, k / (self.C * n))  # symmetric
        # products in fixed blocks of one thread each, side by side: the same numbers on any
        # thread count (pinid.models.threads), as the regression's
        threads = blas_threads()
        # whitened pins: scores Z @ V.T = (X - mean) @ W.T, W = V @ P
        Z = _stacked(_row_blocks(X), P, threads)
        Z -= mean @ P  # (not X - mean: a third copy of the features)
        # a softmax over one user would learn nothing
        size = SHORTLIST if self.shortlist is None else self.shortlist
        shortlists, nearest = _shortlists(Z, labels, k, min(max(size, 2), k), threads)
        # pins with the same nearest user in the same blocks: their shortlists overlap (each
        # block takes its rows of Z and X: no reordered copy of either)
        order = np.argsort(nearest, kind="stable")
        blocks = [_Block.of(order[b : b + BLOCK_PINS], shortlists, labels)
                  for b in range(0, n, BLOCK_PINS)]  # fmt: skip
        # two columns w0 = -w1 = w/2 carry |w|²/2: twice the penalty, as the regression's
        penalty = (2.0 if k == 2 else 1.0) / (self.C * n)
        tol = capped_tolerance(self.tol, X, labels)

        parts = np.array_split(np.arange(len(blocks)), PARTS)

        def part_loss(part: np.ndarray, V: np.ndarray, b: np.ndarray) -> tuple:
            """A part's blocks' summed log-loss and gradient (w.r.t. W on ``X``, and b)."""
            value, products, sums = 0.0, np.zeros((k, d), np.float32), np.zeros(k, np.float32)
            for i in part:
                block = blocks[i]
                block_value, block_products, block_sums = block.loss(Z, X, V, b, n)
                value += block_value
                products[block.users] += block_products
                sums[block.users] += block_sums
            return value, products, sums

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray, bool]:
            V, b = theta[: k * d].reshape(k, d), theta[k * d :]
            # a fixed number of parts, each on one thread, summed in order: the same numbers
            # on any thread count
            with one_thread():
                done = side_by_side(lambda part: part_loss(part, V, b), parts, threads)
            W = _times(P, V.T, threads).T
            value = math.fsum(value for value, _, _ in done) / n
            value += penalty * _squared_norm(W) / 2
            gradient_W, column_sums = penalty * W, np.zeros(k, np.float32)
            for _, products, sums in done:
                gradient_W += products
                column_sums += sums
            # the regression's rule, on the gradient w.r.t. W with the intercept not centred
            largest = max(np.abs(gradient_W).max(), np.abs(column_sums).max())
            gradient = np.empty(k * d + k, np.float32)
            gradient_W -= np.outer(column_sums, mean)
            gradient[: k * d] = _times(P, gradient_W.T, threads).T.ravel()
            gradient[k * d :] = column_sums
            return value, gradient, largest <= tol

        result = solve_from_zero(loss, k * d + k, self.max_iter, tol)
        V, b = result.x[: k * d].reshape(k, d), result.x[k * d :]
        W = _times(P, V.T, threads).astype(np.float64)  # scores: (X - mean) @ W + b
        return self._keep(W, b - W.T @ mean, result.nit)


def _shortlists(Z: np.ndarray, labels: np.ndarray, k: int, size: int,
                threads: int = 1) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(n, ``size``) users per pin: those whose whitened centroids are most like it (cosine),
    its own user always among them (in place of the last); and each pin's most alike user."""
    n = len(Z)
    centroids = user_sums(Z, labels, k)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out = np.empty((n, size), np.int64)
    nearest = np.empty(n, np.int64)
    step = max(1, SCORED // k)

    def shortlist(begin: int) -> None:
        rows = slice(begin, begin + step)
        scores = Z[rows] @ centroids.T  # a pin's norm changes no ranking within its row
        nearest[rows] = scores.argmax(axis=1)
        if size < k:
            out[rows] = np.argpartition(-scores, size - 1, axis=1)[:, :size]
        else:
            out[rows] = np.arange(k)

    with one_thread():  # chunks side by side, each on one thread
        side_by_side(shortlist, range(0, n, step), threads)
    missing = ~(out == labels[:, None]).any(axis=1)
    out[missing, -1] = labels[missing]
    return out, nearest


@dataclass
class _Block:
    """Pins (of neighbouring nearest users) whose shortlists are scored together: one product
    with the union of their shortlisted users (BLAS), of which each pin keeps its own
    shortlist's scores."""

    pins: np.ndarray  # rows of the features
    users: np.ndarray  # the union, sorted
    places: np.ndarray  # (pins, shortlist): each pin's shortlisted users, as places in users
    own: np.ndarray  # each pin's own user, as a column of places

    @classmethod
    def of(cls, pins: np.ndarray, shortlists: np.ndarray, labels: np.ndarray) -> _Block:
        """The block of ``pins`` (rows of the features)."""
        mine = shortlists[pins]
        users = np.unique(mine)
        own = np.argmax(mine == labels[pins, None], axis=1)
        return cls(pins, users, np.searchsorted(users, mine), own)

    def loss(self, Z: np.ndarray, X: np.ndarray, V: np.ndarray, b: np.ndarray,
             n: int) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
        """This block's summed log-loss, and its gradient's parts for its users: with
        respect to their weights on the features ``X`` (intercept not centred), and to their
        intercepts."""
        scores = Z[self.pins] @ V[self.users].T + b[self.users]
        z = np.take_along_axis(scores, self.places, axis=1)
        value = log_loss_into_gradient(z, self.own, n)  # z: the shortlists' scores' gradient
        scores[:] = 0.0
        np.put_along_axis(scores, self.places, z, axis=1)
        return value, scores.T @ X[self.pins], scores.sum(axis=0)
