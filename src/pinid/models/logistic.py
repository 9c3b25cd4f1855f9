"""Multinomial logistic regression solved by preconditioned L-BFGS, for dense or sparse features.

The model, its objective and its stopping rule are scikit-learn's ``LogisticRegression``
(L2, multinomial): the mean log-loss plus ``|W|² / (2·C·n)``, intercept not penalised, stop
when no gradient entry exceeds ``tol``. Only the solver's path differs. Features are far from
isotropic (CNN features are correlated, tf-idf columns range from frequent to rare words) and
plain L-BFGS pays for it in iterations; here L-BFGS runs on ``V`` with ``W = P·V``, which
leaves the minimum where it was:

- dense features: ``P = (Σ + alpha·I)^(-1/2)`` (``Σ`` the features' covariance, ``alpha =
  users / (C·n)`` the penalty's weight against the data's), a whitening;
- sparse features: ``P = diag(σ² + alpha)^(-1/4)`` (``σ²`` each feature's variance), half of
  that scaling and without the correlations, so that nothing is densified.

Everything runs in float32 (twice BLAS's float64 rate, half the bytes of every pass over the
weights) but the loss's sums: the products, and L-BFGS's iterate and steps
(:mod:`pinid.models.lbfgs`, without L-BFGS-B's bound machinery). The products run in blocks
side by side, as many at once as BLAS may use threads, and give the same numbers on any
number of threads. What it saves against scikit-learn's solvers: docs/performance.md.
"""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import sger
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from pinid.models.gram import principal_axes
from pinid.models.lbfgs import Loss, Result, minimize_lbfgs
from pinid.models.threads import blas_threads, one_thread, side_by_side

DENSE_BLOCK = 256  # rows of a dense product's blocks (see _Products)
COVARIANCE_ROWS = 8_192  # about (at most twice); a preconditioner need not be exact
PREDICT_SCORES = 8_000_000
"""Pin x class scores :meth:`SoftmaxClassifier.predict` holds at once (64 MB in float64)."""
HISTORY = 5
"""L-BFGS's stored steps: half scipy's default, since each step holds a copy of every weight
(millions for the character view) and more steps saved few iterations."""


class SoftmaxClassifier(ClassifierMixin, BaseEstimator):
    """A multinomial logistic model's answers from ``coef_`` and ``intercept_``, however they
    were fitted: the softmax of ``X @ coef_.T + intercept_`` (for two classes, scikit-learn's
    one margin in (1, d) and (1,) shapes)."""

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, accept_sparse="csr")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}"
            )
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.column_stack([1 - positive, positive])
        # scipy's softmax's operations, in place on the fresh scores (it made three more
        # pins x users arrays)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def _keep(self, W: np.ndarray, intercept: np.ndarray, n_iter: int) -> SoftmaxClassifier:
        """Weights (features, classes) and intercepts kept in scikit-learn's shapes."""
        if len(intercept) == 2:  # scikit-learn's shape for two classes: the second's margin
            self.coef_ = (W[:, 1] - W[:, 0])[None, :]
            self.intercept_ = np.array([intercept[1] - intercept[0]])
        else:
            # feature-major (W's transpose, not a copy): ``X @ coef_.T`` on sparse X copies a
            # coef_.T that is not C-contiguous, which cost a single pin 0.7 ms per view
            self.coef_, self.intercept_ = W.T, intercept
        self.n_features_in_ = W.shape[0]
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        return self

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row, scored :data:`PREDICT_SCORES` pins x classes
        at a time: the C search's validation pins at 10,000 users would otherwise hold 4 GB
        of scores at once."""
        check_is_fitted(self)
        X = check_array(X, accept_sparse="csr")
        step = max(1, PREDICT_SCORES // len(self.classes_))
        best = []
        for start in range(0, X.shape[0], step):
            scores = self.decision_function(X[start : start + step])
            best.append((scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1))
        return self.classes_[np.concatenate(best)]


class PreconditionedLogisticRegression(SoftmaxClassifier):
    """``LogisticRegression(C=C)``'s model, fitted by L-BFGS on preconditioned features.

    ``tol`` is capped at a quarter of the starting gradient (:func:`capped_tolerance`). For
    two users the two-column softmax is fitted with twice the penalty, which makes it
    scikit-learn's binary model at the same C, returned in its (1, d) shape.

    Parameters
    ----------
    C : float
        Inverse regularisation, as scikit-learn's.
    tol : float
        Stop when no gradient entry exceeds it.
    max_iter : int
        Most L-BFGS iterations.

    Attributes
    ----------
    classes_ : ndarray
        The labels.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
    intercept_ : ndarray of shape (n_classes,), or (1,)
    n_iter_ : ndarray of shape (1,)
        Iterations L-BFGS took.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y: np.ndarray) -> PreconditionedLogisticRegression:
        X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float32, order="C")  # finite
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("need two or more classes")
        n, d = X.shape
        k = len(self.classes_)
        mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
        mean32 = mean.astype(np.float32)
        alpha = k / (self.C * n)
        P = _feature_scales(X, mean, alpha) if sp.issparse(X) else _whitener(X, mean32, alpha)
        # scikit-learn's stopping rule: no entry of the gradient with respect to its own
        # parameters (W, intercept) above tol; L-BFGS's own test would apply it to V's
        tol = capped_tolerance(self.tol, X, labels)
        # two columns w0 = -w1 = w/2 carry |w|²/2: twice the penalty is scikit-learn's binary one
        penalty = (2.0 if k == 2 else 1.0) / (self.C * n)
        threads = blas_threads()
        products = _Products(X, threads)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray, bool]:
            W = _times(P, theta[: d * k].reshape(d, k), threads)
            z = products.times(W)
            z += theta[d * k :] - np.einsum("i,ij->j", mean32, W)  # not BLAS: see _dot
            value = log_loss_into_gradient(z, labels, n) / n  # z: the logits' gradient
            value += penalty * _squared_norm(W) / 2
            column_sums = z.sum(axis=0, dtype=np.float64).astype(np.float32)
            # w.r.t. scikit-learn's W (intercept not centred), then V's
            gradient_W = products.transposed_times(z)
            W *= penalty
            gradient_W += W
            largest = max(gradient_W.max(), -gradient_W.min(), np.abs(column_sums).max())
            # -= outer(mean, column sums), in place
            gradient_W = sger(-1.0, column_sums, mean32, a=gradient_W.T, overwrite_a=True).T
            gradient = np.empty(d * k + k, np.float32)
            _times(P, gradient_W, threads, out=gradient[: d * k].reshape(d, k))
            gradient[d * k :] = column_sums
            return value, gradient, largest <= tol

        result = solve_from_zero(loss, d * k + k, self.max_iter, tol)
        W = _times(P, result.x[: d * k].reshape(d, k), threads).astype(np.float64)
        intercept = result.x[d * k :] - np.einsum("i,ij->j", mean, W)
        return self._keep(W, intercept, result.nit)


def log_loss_into_gradient(z: np.ndarray, labels: np.ndarray, n: int) -> float:
    """The summed log-loss of each row's softmax of scores ``z`` at its column ``labels``;
    ``z`` becomes, in place, the gradient with respect to the scores of that loss's mean over
    ``n`` pins."""
    rows = np.arange(len(z))
    z -= z.max(axis=1, keepdims=True)
    picked = z[rows, labels]
    np.exp(z, out=z)
    totals = z.sum(axis=1)
    value = float(np.sum(np.log(totals) - picked, dtype=np.float64))
    z *= (1.0 / (n * totals))[:, None]
    z[rows, labels] -= 1.0 / n
    return value


def solve_from_zero(loss: Loss, size: int, max_iter: int, tol: float) -> Result:
    """L-BFGS from zero weights (float32) on a softmax's ``loss``, warning as scikit-learn
    does when it stops before the gradient fell below ``tol``."""
    result = minimize_lbfgs(loss, np.zeros(size, np.float32), max_iter, HISTORY,
                            ftol=64 * np.finfo(float).eps)  # fmt: skip
    if not result.done:
        warnings.warn(
            f"L-BFGS stopped before the gradient fell below {tol:.2g}: {result.message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


def _whitener(X: np.ndarray, mean: np.ndarray, alpha: float) -> np.ndarray:
    """``(Σ + alpha·I)^(-1/2)`` (float32), ``Σ`` estimated on evenly spaced rows of ``X``.

    With fewer rows than features, ``Σ``'s eigenvectors come from the rows' Gram matrix
    (:func:`pinid.models.gram.principal_axes`): decomposing the 2272 image features'
    covariance takes 1.1 s, most of a small model's fit.
    """
    sample = X[:: max(1, len(X) // COVARIANCE_ROWS)] - mean
    with one_thread():  # the same whitener on any thread count (see pinid.models.threads)
        if len(sample) < X.shape[1]:
            values, vectors = principal_axes(sample)
            values /= len(sample)
            base = alpha**-0.5  # on every direction the rows do not span
            P = (vectors * (1.0 / np.sqrt(values + alpha) - base)) @ vectors.T
            P[np.diag_indices_from(P)] += base
            return P.astype(np.float32)
        values, vectors = np.linalg.eigh((sample.T @ sample).astype(np.float64) / len(sample))
        scale = 1.0 / np.sqrt(np.maximum(values, 0.0) + alpha)
        return ((vectors * scale) @ vectors.T).astype(np.float32)


def _feature_scales(X: sp.csr_matrix, mean: np.ndarray, alpha: float) -> np.ndarray:
    """``(σ² + alpha)^(-1/4)`` per feature (float32): half the whitener's diagonal scaling.

    Features that always occur together (a word's overlapping character n-grams) are scaled up
    together by the full ``(σ² + alpha)^(-1/2)``, which over-stretches their common direction
    and costs iterations; half the scaling does not.
    """
    squares = np.asarray(X.multiply(X).mean(axis=0, dtype=np.float64)).ravel()
    variances = np.maximum(squares - mean**2, 0.0)
    return ((variances + alpha) ** -0.25).astype(np.float32)


def _times(P: np.ndarray, M: np.ndarray, threads: int, out: np.ndarray | None = None):
    """``P @ M`` for a whitener, row scaling for a diagonal one (into ``out`` if given)."""
    if P.ndim == 1:
        return np.multiply(P[:, None], M, out=out)
    return _stacked(_row_blocks(P), M, threads, out)


def _squared_norm(M: np.ndarray) -> float:
    """``|M|²`` summed in float64 (no float64 copy of the weights: it was one of the larger
    costs of a loss evaluation), the same way on any number of threads (see lbfgs ``_dot``)."""
    flat = M.ravel()
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


class _Products:
    """``X @ M`` and ``Xᵀ @ M`` in row blocks multiplied side by side on ``threads`` threads,
    each on one thread, so that a fit's numbers do not depend on the thread count (see
    :func:`pinid.models.threads.one_thread`).

    Sparse ``X``: one block per thread, of about equal non-zeros (a row of a sparse product is
    summed alike in any block; SciPy's sparse products use one thread and release the GIL:
    1.85 times faster on two cores). Dense ``X``: blocks of :data:`DENSE_BLOCK` rows whatever
    the thread count, since a dense product's rounding may depend on its shape."""

    def __init__(self, X: np.ndarray | sp.csr_matrix, threads: int) -> None:
        self.threads = threads
        if sp.issparse(X):
            self.blocks = _equal_work(X, threads)
            self.transposed = _equal_work(X.T.tocsr(), threads)
        else:
            self.blocks, self.transposed = _row_blocks(X), _row_blocks(X.T)

    def times(self, M: np.ndarray) -> np.ndarray:
        return _stacked(self.blocks, M, self.threads)

    def transposed_times(self, M: np.ndarray) -> np.ndarray:
        return _stacked(self.transposed, M, self.threads)


def _equal_work(X: sp.csr_matrix, parts: int) -> list[sp.csr_matrix]:
    cuts = np.searchsorted(X.indptr, np.linspace(0, X.nnz, parts + 1)[1:-1])
    bounds = np.unique(np.concatenate([[0], cuts, [X.shape[0]]]))
    return [X[a:b] for a, b in pairwise(bounds)]


def _row_blocks(X: np.ndarray) -> list[np.ndarray]:
    return [X[start : start + DENSE_BLOCK] for start in range(0, len(X), DENSE_BLOCK)]


def _stacked(blocks: list, M: np.ndarray, threads: int, out: np.ndarray | None = None):
    """The blocks' products with ``M``, one below the other (into ``out`` if given)."""
    starts = np.cumsum([0] + [b.shape[0] for b in blocks])
    if out is None:
        out = np.empty((starts[-1], M.shape[1]), np.result_type(M.dtype, blocks[0].dtype))

    def one(i: int) -> None:
        out[starts[i] : starts[i + 1]] = blocks[i] @ M

    with one_thread():
        side_by_side(one, range(len(blocks)), threads)
    return out


def capped_tolerance(tol: float, features, labels: np.ndarray) -> float:
    """``tol``, or a quarter of the starting gradient where that is smaller.

    lbfgs stops when no entry of the mean log-loss's gradient exceeds ``tol``. At zero the
    weights' gradient is (features' mean - each user's mean) / users (for users of equal
    size), so with many users it starts below scikit-learn's 1e-4 and the fit would stop
    before its first step, its weights all zero; the cap asks every fit for at least a 4-fold
    reduction of the gradient.
    """
    classes, index = np.unique(np.asarray(labels), return_inverse=True)
    total = np.asarray(features.sum(axis=0)).ravel()
    sums = user_sums(features, index, len(classes))
    start = float(np.abs(total / len(classes) - sums).max() / features.shape[0])
    return min(tol, start / 4)


def user_sums(features, index: np.ndarray, n_users: int, order: str = "C") -> np.ndarray:
    """Each user's pins' features summed: (users, features), dense in ``order``; ``index``
    each pin's user, 0 to ``n_users`` - 1. Float32 features stay float32 (no float64 copy of
    them); integers become floats."""
    n = features.shape[0]
    ones = np.ones(n, dtype=np.result_type(features.dtype, np.float32))
    members = sp.csr_matrix((ones, (index, np.arange(n))), shape=(n_users, n))
    sums = members @ features
    return sums.toarray(order=order) if sp.issparse(sums) else np.asarray(sums, order=order)
