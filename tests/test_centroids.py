"""The centroid classifier of a view with too many weights for a regression: a softmax over
scaled cosines to the users' centroids, its scale by exact leave-one-out log-loss."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.preprocessing import normalize

from pinid.models import centroids
from pinid.models.centroids import CentroidClassifier


def _pins(n: int = 120, users: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised pins around one centre per user, overlapping enough to err."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, users, n)
    centres = rng.normal(size=(users, 12))
    return normalize(centres[y] + 1.5 * rng.normal(size=(n, 12))).astype(np.float32), y


def _leave_one_out_loss(X: np.ndarray, y: np.ndarray, scale: float, rows=None) -> float:
    """Each pin (of ``rows``) against every user's centroid, its own user's recomputed without
    it (0 where nothing is left)."""
    users, losses = np.unique(y), []
    for i in range(len(y)) if rows is None else rows:
        others = np.arange(len(y)) != i
        sums = np.stack([X[others & (y == u)].sum(axis=0) for u in users])
        scores = scale * (normalize(sums) @ X[i])
        losses.append(logsumexp(scores) - scores[np.searchsorted(users, y[i])])
    return float(np.mean(losses))


def _best_scale(X: np.ndarray, y: np.ndarray, rows=None) -> float:
    loss = lambda s: _leave_one_out_loss(X, y, s, rows)  # noqa: E731
    return minimize_scalar(loss, bounds=(0.0, 1000.0), method="bounded").x


def test_the_scale_minimises_the_exact_leave_one_out_log_loss():
    X, y = _pins()
    model = CentroidClassifier().fit(X, y)
    assert 1.0 < model.scale_ < 100.0
    assert model.scale_ == pytest.approx(_best_scale(X, y), rel=1e-3)


def test_beyond_its_scores_the_scale_is_fitted_on_a_seeded_sample(monkeypatch):
    X, y = _pins()
    monkeypatch.setattr(centroids, "SCALE_SCORES", 40 * 4)  # 40 of the 120 pins
    model = CentroidClassifier().fit(X, y)
    rows = np.sort(np.random.default_rng(0).choice(len(y), 40, replace=False))
    assert model.scale_ == pytest.approx(_best_scale(X, y, rows), rel=1e-3)
    assert model.scale_ != pytest.approx(_best_scale(X, y), rel=1e-3)
    assert CentroidClassifier().fit(X, y).scale_ == model.scale_  # the same sample again


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
    assert sparse.scale_ == pytest.approx(dense.scale_, rel=1e-3)  # a flat minimum, float32
    np.testing.assert_allclose(sparse.predict_proba(sp.csr_matrix(X)), dense.predict_proba(X),
                               atol=1e-3)  # fmt: skip


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
    X, y = np.vstack([X, X[:1], np.zeros((1, X.shape[1]), np.float32)]), np.append(y, [4, 1])
    model = CentroidClassifier().fit(X, y)
    assert np.isfinite(model.coef_).all()
    assert model.scale_ == pytest.approx(_best_scale(X, y), rel=1e-3)
    np.testing.assert_allclose(model.predict_proba(X[-1:]), 1 / 5)  # no words: every user alike


def test_refuses_one_user():
    X, y = _pins()
    with pytest.raises(ValueError, match="two or more classes"):
        CentroidClassifier().fit(X, np.zeros_like(y))
