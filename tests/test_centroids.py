"""The centroid classifier of a view with too many weights for a regression: a softmax over
scaled cosines to the users' centroids, its scale by exact leave-one-out log-loss."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.preprocessing import normalize

from pinid.models.centroids import CentroidClassifier


def _pins(n: int = 120, users: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised pins around one centre per user, overlapping enough to err."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, users, n)
    centres = rng.normal(size=(users, 12))
    return normalize(centres[y] + 1.5 * rng.normal(size=(n, 12))).astype(np.float32), y


def _leave_one_out_loss(X: np.ndarray, y: np.ndarray, scale: float) -> float:
    """Each pin against every user's centroid, its own user's recomputed without it."""
    losses = []
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        sums = np.stack([X[others & (y == u)].sum(axis=0) for u in np.unique(y)])
        scores = scale * (normalize(sums) @ X[i])
        losses.append(logsumexp(scores) - scores[y[i]])
    return float(np.mean(losses))


def test_the_scale_minimises_the_exact_leave_one_out_log_loss():
    X, y = _pins()
    model = CentroidClassifier().fit(X, y)
    best = _leave_one_out_loss(X, y, model.scale_)
    assert 1.0 < model.scale_ < 100.0
    for factor in (0.8, 1.25):
        assert _leave_one_out_loss(X, y, model.scale_ * factor) > best


def test_probabilities_are_the_softmax_of_scaled_cosines_to_the_centroids():
    X, y = _pins()
    model = CentroidClassifier().fit(X, y)
    centroids = normalize(np.stack([X[y == u].sum(axis=0) for u in range(4)]))
    expected = softmax(model.scale_ * X @ centroids.T, axis=1)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-7)
    assert (model.predict(X) == y).mean() > 0.7
    assert model.coef_.T.flags.c_contiguous  # feature-major, as the regression's weights


def test_sparse_and_dense_pins_give_one_model():
    X, y = _pins()
    dense, sparse = CentroidClassifier().fit(X, y), CentroidClassifier().fit(sp.csr_matrix(X), y)
    assert sparse.scale_ == pytest.approx(dense.scale_, rel=1e-6)
    np.testing.assert_allclose(sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X),
                               atol=1e-6)  # fmt: skip


def test_two_users_get_the_binary_shape_with_the_same_probabilities():
    X, y = _pins(users=2)
    model = CentroidClassifier().fit(X, y)
    assert model.coef_.shape == (1, X.shape[1]) and model.intercept_.shape == (1,)
    centroids = normalize(np.stack([X[y == u].sum(axis=0) for u in range(2)]))
    expected = softmax(model.scale_ * X @ centroids.T, axis=1)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-7)


def test_a_user_of_one_pin_and_an_empty_pin_leave_nothing_undefined():
    """Left out, a one-pin user's centroid is empty: its pin scores 0 there, not NaN."""
    X, y = _pins()
    X, y = np.vstack([X, X[:1], np.zeros((1, X.shape[1]), np.float32)]), np.append(y, [7, 1])
    model = CentroidClassifier().fit(X, y)
    assert np.isfinite(model.scale_) and np.isfinite(model.coef_).all()
    np.testing.assert_allclose(model.predict_proba(X[-1:]), 1 / 5)  # no words: every user alike


def test_refuses_one_user():
    X, y = _pins()
    with pytest.raises(ValueError, match="two or more classes"):
        CentroidClassifier().fit(X, np.zeros_like(y))
