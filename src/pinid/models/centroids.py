"""A softmax over each user's centroid: the classifier of a view whose logistic regression
would hold too many weights (many users over a wide dictionary).

Each user is the L2-normalised sum of their pins' vectors; a pin's score for a user is its
dot product with that centroid (the cosine, for L2-normalised pins) times one scale, and the
probabilities are the softmax of the scores. That is a multinomial logistic model (weights =
scale x centroids, intercepts 0), so it answers, is saved and loads as the fitted logistic
regression does. Fitting it is a sum per user and a one-dimensional search, where L-BFGS
iterates over dictionary x users weights and holds a dozen copies of them.

The scale is the one that minimises the training pins' leave-one-out log-loss: each pin scored
against its own user's centroid without it (exact, from the centroid's sum), so that the scale
is not fitted to pins that sit inside the centroids they are scored on.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from sklearn.utils.validation import check_X_y

from pinid.models.logistic import SoftmaxClassifier, user_sums

SCALE_SCORES = 20_000_000
"""Pin x user scores the scale's search holds at once (float32: 80 MB, and one buffer as
large): it reads that many pins' worth, drawn at random (seeded), not every training pin."""
MAX_SCALE = 1_000.0


class CentroidClassifier(SoftmaxClassifier):
    """Softmax of a scaled cosine to each user's centroid (features' rows L2-normalised or
    zero, as tf-idf's are).

    Attributes
    ----------
    classes_ : ndarray
        The labels.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        ``scale_`` times each user's L2-normalised centroid (float32, feature-major).
    intercept_ : ndarray of shape (n_classes,), or (1,)
        Zeros.
    scale_ : float
        The scale, by leave-one-out log-loss.
    """

    def fit(self, X, y: np.ndarray) -> CentroidClassifier:
        X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float32, order="C")  # finite
        self.classes_, labels = np.unique(y, return_inverse=True)
        k, d = len(self.classes_), X.shape[1]
        if k < 2:
            raise ValueError("need two or more classes")
        # feature-major, as the logistic's weights, so that ``X @ centroids.T`` copies nothing
        centroids = user_sums(X, labels, k, order="F")
        norms = np.sqrt(np.einsum("ij,ij->i", centroids, centroids, dtype=np.float64))
        centroids /= np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]
        self.scale_ = _leave_one_out_scale(X, labels, centroids, norms)
        centroids *= np.float32(self.scale_)
        if k == 2:  # scikit-learn's shape for two classes: the second class's margin
            centroids = np.asfortranarray(centroids[1:] - centroids[:1])
        self.coef_ = centroids
        self.intercept_ = np.zeros(1 if k == 2 else k)
        self.n_features_in_ = d
        return self


def _leave_one_out_scale(X, labels: np.ndarray, centroids: np.ndarray,
                         norms: np.ndarray) -> float:  # fmt: skip
    """The scale minimising the mean log-loss of the training pins (a seeded sample beyond
    :data:`SCALE_SCORES` scores), each scored against its own user's centroid without it:
    ``x·(S - x) / |S - x|`` for the user's sum ``S`` (0 where nothing is left), the other
    users' centroids as they are."""
    n = X.shape[0]
    rows = np.arange(n)
    if n * len(centroids) > SCALE_SCORES:  # seeded: the same model from the same pins
        size = max(1, SCALE_SCORES // len(centroids))
        rows = np.sort(np.random.default_rng(0).choice(n, size, replace=False))
    sample, own_user = X[rows], labels[rows]
    scores = np.asarray(sample @ centroids.T, np.float32)
    picked = np.arange(len(rows)), own_user
    squares = sample.multiply(sample).sum(axis=1) if sp.issparse(sample) else (sample**2).sum(1)
    squares = np.asarray(squares, np.float64).ravel()
    with_own = scores[picked] * norms[own_user]  # x·S
    rest = np.sqrt(np.maximum(norms[own_user] ** 2 - 2 * with_own + squares, 0.0))
    # nothing left but float32 rounding of the sum (about 1e-7 of it a term)
    left = rest > 1e-3 * np.maximum(norms[own_user], 1.0)
    own = np.where(left, (with_own - squares) / np.where(left, rest, 1.0), 0.0)
    scores[picked] = own
    buffer = np.empty_like(scores)

    def log_loss(scale: float) -> float:
        z = np.multiply(scores, np.float32(scale), out=buffer)
        top = z.max(axis=1, keepdims=True)
        z -= top
        np.exp(z, out=z)
        totals = z.sum(axis=1, dtype=np.float64)
        return float(np.mean(np.log(totals) + top[:, 0] - scale * own))

    return float(minimize_scalar(log_loss, bounds=(0.0, MAX_SCALE), method="bounded").x)
