"""The image view's regression over shortlists of users (pinid.models.shortlist)."""

from __future__ import annotations

import numpy as np
import pytest

from pinid.models.logistic import PreconditionedLogisticRegression
from pinid.models.shortlist import ShortlistLogisticRegression, _shortlists


def _users_in_clusters(n_users: int = 40, pins: int = 12, d: int = 24, seed: int = 0):
    """Users whose pins come from a few shared clusters plus a small offset of their own, as
    the synthetic corpus's images do: each user is confusable with some others only."""
    rng = np.random.default_rng(seed)
    clusters = rng.normal(size=(8, d))
    offsets = 0.6 * rng.normal(size=(n_users, d))
    y = np.repeat(np.arange(n_users), pins)
    own_cluster = rng.integers(0, 8, n_users)
    X = clusters[own_cluster[y]] + offsets[y] + 0.5 * rng.normal(size=(len(y), d))
    return X.astype(np.float32), y


def test_with_every_user_shortlisted_it_is_the_full_regression():
    X, y = _users_in_clusters(n_users=12)
    shortlisted = ShortlistLogisticRegression(C=1.0, shortlist=12, tol=1e-5, full_up_to=0)
    shortlisted.fit(X, y)
    full = PreconditionedLogisticRegression(C=1.0, tol=1e-5).fit(X, y)
    np.testing.assert_allclose(shortlisted.coef_, full.coef_, atol=2e-3 * np.abs(full.coef_).max())
    np.testing.assert_allclose(shortlisted.predict_proba(X), full.predict_proba(X), atol=2e-3)


def test_below_the_limit_it_is_the_full_regression_itself():
    X, y = _users_in_clusters(n_users=10)
    shortlisted = ShortlistLogisticRegression(C=3.0, shortlist=4).fit(X, y)  # far below
    full = PreconditionedLogisticRegression(C=3.0).fit(X, y)
    np.testing.assert_array_equal(shortlisted.coef_, full.coef_)
    np.testing.assert_array_equal(shortlisted.intercept_, full.intercept_)


def test_shortlists_hold_the_users_most_like_each_pin_and_always_its_own():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 30, 300)
    lists, nearest = _shortlists(Z, labels, 30, 5)
    assert lists.shape == (300, 5)
    assert all(len(set(row)) == 5 for row in lists.tolist())
    assert (lists == labels[:, None]).any(axis=1).all()
    centroids = np.zeros((30, 16), np.float32)
    np.add.at(centroids, labels, Z)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    scores = Z @ centroids.T
    best = np.argsort(-scores, axis=1)[:, :4]  # the top four are always kept
    np.testing.assert_array_equal(nearest, best[:, 0])
    assert all(set(b) <= set(row) for b, row in zip(best.tolist(), lists.tolist(), strict=True))


def test_a_shortlisted_fit_identifies_users_about_as_well_as_the_full_one():
    X, y = _users_in_clusters()
    rng = np.random.default_rng(2)
    test = rng.random(len(y)) < 0.25
    full = PreconditionedLogisticRegression(C=1.0).fit(X[~test], y[~test])
    shortlisted = ShortlistLogisticRegression(C=1.0, shortlist=8, full_up_to=0)
    shortlisted.fit(X[~test], y[~test])
    full_accuracy = np.mean(full.predict(X[test]) == y[test])
    accuracy = np.mean(shortlisted.predict(X[test]) == y[test])
    assert full_accuracy > 0.5  # the problem is learnable, far above chance (2.5 %)
    assert accuracy > full_accuracy - 0.05
    proba = shortlisted.predict_proba(X[test])
    assert proba.shape == (test.sum(), 40)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # float32's floor
def test_the_fit_ends_where_its_objectives_gradient_vanishes():
    """The objective recomputed here in float64 from its definition (each pin's log-loss among
    its shortlist, plus the penalty) has a gradient near zero at the fitted weights."""
    from pinid.models.logistic import _whitener

    X, y = _users_in_clusters(n_users=30, pins=10)
    C, size = 0.5, 5
    model = ShortlistLogisticRegression(C=C, shortlist=size, tol=1e-6, full_up_to=0).fit(X, y)
    n, k = len(y), 30
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    lists, _ = _shortlists((X - mean) @ _whitener(X, mean, k / (C * n)), y, k, size)
    scores = X.astype(np.float64) @ model.coef_.T + model.intercept_
    mine = np.take_along_axis(scores, lists, axis=1)
    p = np.exp(mine - mine.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[lists == y[:, None]] -= 1.0
    by_user = np.zeros((n, k))
    np.put_along_axis(by_user, lists, p / n, axis=1)
    gradient_W = by_user.T @ X + model.coef_ / (C * n)
    assert np.abs(gradient_W).max() < 1e-5 and np.abs(by_user.sum(axis=0)).max() < 1e-5
    # and it is not the full softmax's minimum
    full = PreconditionedLogisticRegression(C=C, tol=1e-6).fit(X, y)
    assert np.abs(model.coef_ - full.coef_).max() > 0.1 * np.abs(full.coef_).max()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_two_users_give_the_regressions_binary_model():
    X, y = _users_in_clusters(n_users=2)
    model = ShortlistLogisticRegression(C=0.05, shortlist=1, tol=1e-6, full_up_to=0).fit(X, y)
    full = PreconditionedLogisticRegression(C=0.05, tol=1e-6).fit(X, y)
    assert model.coef_.shape == (1, X.shape[1]) and model.intercept_.shape == (1,)
    np.testing.assert_allclose(model.coef_, full.coef_, atol=1e-3 * np.abs(full.coef_).max())


def test_one_user_is_refused():
    with pytest.raises(ValueError, match="two or more"):
        ShortlistLogisticRegression().fit(np.ones((3, 2)), np.zeros(3))


def test_a_fit_gives_the_same_numbers_on_one_thread_as_on_several():
    """As the regression's: a cluster's one-thread worker fits the in-process model."""
    from threadpoolctl import threadpool_limits

    X, y = _users_in_clusters(n_users=60, pins=10)
    several = ShortlistLogisticRegression(shortlist=6, full_up_to=0).fit(X, y)
    with threadpool_limits(1):
        one = ShortlistLogisticRegression(shortlist=6, full_up_to=0).fit(X, y)
    np.testing.assert_array_equal(one.coef_, several.coef_)
    np.testing.assert_array_equal(one.intercept_, several.intercept_)
