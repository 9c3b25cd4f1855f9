"""The views' logistic regression: scikit-learn's model, reached in fewer iterations, for dense
CNN features and sparse tf-idf alike."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression

from pinid.models.logistic import PreconditionedLogisticRegression, capped_tolerance


def _anisotropic(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features whose columns differ in scale by 300x, like CNN activations."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.gamma(1.0, 1.0, (classes, 30))
    X = 0.6 * centres[y] + rng.gamma(1.0, 1.0, (n, 30))
    return X * np.geomspace(0.01, 3.0, 30), y


def _bag_of_words(n: int, classes: int, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """L2-normalised word counts: six words a pin from a Zipfian vocabulary of 300 skewed per
    user, so frequent and rare words' columns differ in spread by orders of magnitude."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    skew = 1.0 + 8.0 * rng.gamma(0.3, 1.0, (classes, 300))
    p = skew[y] / np.arange(1, 301)
    counts = np.array([rng.multinomial(6, row / row.sum()) for row in p], dtype=float)
    return sp.csr_matrix(counts / np.linalg.norm(counts, axis=1, keepdims=True)), y


@pytest.mark.parametrize(("features", "n"), [(_anisotropic, 400), (_bag_of_words, 400),
                                             (_anisotropic, 24)])  # fmt: skip
def test_fits_scikit_learns_model(features, n):
    """Also with fewer pins than dense features, whose whitening comes from the pins' Gram."""
    X, y = features(n, 4)
    ours = PreconditionedLogisticRegression(C=10.0, tol=1e-9).fit(X, y)
    theirs = LogisticRegression(C=10.0, tol=1e-10, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=2e-3 * np.abs(theirs.coef_).max())
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-3)
    assert (ours.predict(X) == theirs.predict(X)).all()


@pytest.mark.parametrize("rows", [1, 5, 24])
def test_the_whitener_of_fewer_pins_than_features_is_the_covariances(rows):
    """From the pins' Gram matrix, (Σ + alpha·I)^(-1/2) as the features' covariance gives it,
    also for pins without features (zero rows) and for a single pin."""
    from pinid.models.logistic import _whitener

    X = _anisotropic(rows, 2)[0].astype(np.float32)
    X[::3] = 0
    mean, alpha = X.mean(axis=0), 0.05
    centred = (X - mean).astype(np.float64)
    values, vectors = np.linalg.eigh(centred.T @ centred / rows)
    expected = (vectors / np.sqrt(np.maximum(values, 0) + alpha)) @ vectors.T
    np.testing.assert_allclose(
        _whitener(X, mean, alpha), expected, atol=1e-6 * np.abs(expected).max()
    )


def test_two_users_get_scikit_learns_binary_model():
    X, y = _anisotropic(300, 2, seed=1)
    labels = np.array(["ann", "bob"])[y]
    ours = PreconditionedLogisticRegression(C=1.0, tol=1e-9).fit(X, labels)
    theirs = LogisticRegression(C=1.0, tol=1e-10, max_iter=100_000).fit(X, labels)
    assert ours.coef_.shape == (1, 30) and ours.intercept_.shape == (1,)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-3)
    assert (ours.predict(X) == theirs.predict(X)).all()
    assert list(ours.classes_) == ["ann", "bob"]


@pytest.mark.parametrize("features", [_anisotropic, _bag_of_words])
def test_stops_by_scikit_learns_rule(features):
    """At the default tol, scikit-learn's own gradient (float64, its parameters W and b) has
    no entry above 1e-4 at the fitted weights."""
    X, y = features(400, 4)
    C = 10.0
    ours = PreconditionedLogisticRegression(C=C).fit(X, y)
    n = len(y)
    scores = np.asarray(X @ ours.coef_.T) + ours.intercept_
    residual = softmax(scores, axis=1)
    residual[np.arange(n), y] -= 1.0
    residual /= n
    gradient_W = np.asarray(X.T @ residual) + ours.coef_.T / (C * n)
    largest = max(np.abs(gradient_W).max(), np.abs(residual.sum(axis=0)).max())
    assert 1e-6 < largest <= 1.05e-4  # stopped at the tolerance, not far past it


def test_tolerance_cap_is_a_quarter_of_the_starting_gradient():
    rng = np.random.default_rng(3)
    X = rng.random((6000, 5))
    for users, capped in ((3, False), (2000, True)):
        y = np.repeat(np.arange(users), 6000 // users)
        one_hot = np.eye(users)[y]
        start = np.abs(X.T @ (1.0 / users - one_hot) / len(y)).max()  # gradient at zero
        expected = start / 4 if capped else 1e-4
        assert (start / 4 < 1e-4) == capped
        assert capped_tolerance(1e-4, X, y) == pytest.approx(expected)


@pytest.mark.parametrize("features", [_anisotropic, _bag_of_words])
def test_preconditioning_saves_iterations_at_scikit_learns_tolerance(features):
    # scikit-learn: 1,160 iterations on the dense features, 121 on the words; ours: 60 and 42
    # (L-BFGS-B took 57 and 34, at a higher cost an iteration; 120 on the words unscaled)
    X, y = features(1000, 10)
    ours = PreconditionedLogisticRegression(C=100.0).fit(X, y)
    theirs = LogisticRegression(C=100.0, max_iter=10_000).fit(X, y)
    assert ours.n_iter_[0] * 2.5 < theirs.n_iter_[0]
    assert np.mean(ours.predict(X) == theirs.predict(X)) > 0.98


def test_sparse_and_dense_forms_of_one_matrix_predict_alike():
    X, y = _bag_of_words(300, 3)
    ours = PreconditionedLogisticRegression(C=10.0).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ours.predict_proba(X.toarray()), atol=1e-12)


@pytest.mark.parametrize("classes", [2, 5])
def test_predictions_scored_a_few_rows_at_a_time_are_the_whole_ones(classes, monkeypatch):
    from pinid.models import logistic

    X, y = _bag_of_words(300, classes)
    ours = PreconditionedLogisticRegression(C=10.0).fit(X, y)
    whole = ours.classes_[ours.predict_proba(X).argmax(axis=1)]
    monkeypatch.setattr(logistic, "PREDICT_SCORES", 7 * classes)  # 7 rows at a time
    np.testing.assert_array_equal(ours.predict(X), whole)
    np.testing.assert_array_equal(ours.predict(X.toarray()), whole)


def test_refuses_non_finite_features():
    for X in (np.array([[np.nan, 1.0], [1.0, 2.0]]), sp.csr_matrix([[np.inf, 1.0], [1.0, 2.0]])):
        with pytest.raises(ValueError, match=r"NaN|infinity"):
            PreconditionedLogisticRegression().fit(X, [0, 1])


@pytest.mark.parametrize("sparse", [True, False])
def test_the_products_do_not_depend_on_the_threads(sparse):
    """Split in row blocks multiplied side by side, the products are the same to the bit for
    any number of threads (in process and on a one-thread cluster worker alike)."""
    from pinid.models.logistic import _Products

    X = sp.random(700, 300, density=0.05, format="csr", dtype=np.float32, random_state=1)
    X = X if sparse else X.toarray()
    M = np.random.default_rng(2).standard_normal((300, 7)).astype(np.float32)
    Z = np.random.default_rng(3).standard_normal((700, 7)).astype(np.float32)
    one, three = _Products(X, 1), _Products(X, 3)
    assert len(three.blocks) == 3
    np.testing.assert_array_equal(three.times(M), one.times(M))
    np.testing.assert_array_equal(three.transposed_times(Z), one.transposed_times(Z))
    np.testing.assert_allclose(one.times(M), X @ M, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one.transposed_times(Z), X.T @ Z, rtol=1e-5, atol=1e-5)


def _wide(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense features wide enough that BLAS threads their products and decompositions."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, classes, n)
    return rng.gamma(1.0, 1.0, (classes, 400))[y] + rng.gamma(1.0, 1.0, (n, 400)), y


@pytest.mark.parametrize(
    ("features", "n", "classes"), [(_bag_of_words, 400, 4), (_wide, 2000, 20), (_wide, 300, 20)]
)
def test_a_fit_does_not_depend_on_the_blas_threads(features, n, classes):
    """Also for dense features whose whitening and products BLAS runs on several threads
    (more and fewer pins than features: covariance and Gram whitening)."""
    from threadpoolctl import threadpool_limits

    X, y = features(n, classes)
    with threadpool_limits(1):
        alone = PreconditionedLogisticRegression(C=10.0).fit(X, y)
    with threadpool_limits(3):
        three = PreconditionedLogisticRegression(C=10.0).fit(X, y)
    np.testing.assert_array_equal(alone.coef_, three.coef_)


def test_lbfgs_solves_a_quadratic_in_float32_evaluating_each_point_once():
    from pinid.models.lbfgs import minimize_lbfgs

    rng = np.random.default_rng(4)
    A = rng.standard_normal((40, 40))
    H = (A @ A.T / 40 + np.eye(40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    seen = []

    def loss(x):
        assert x.dtype == np.float32
        seen.append(x.tobytes())
        exact = x.astype(np.float64)
        gradient = H @ exact - b
        value = float(exact @ H @ exact / 2 - b @ exact)
        return value, gradient.astype(np.float32), float(np.abs(gradient).max()) < 1e-4

    result = minimize_lbfgs(loss, np.zeros(40, np.float32), 200, 5, ftol=1e-15)
    assert result.done and result.message == "converged"
    np.testing.assert_allclose(result.x, np.linalg.solve(H, b), atol=1e-3)
    assert len(seen) == len(set(seen))  # the search's value and slope at a point: one call
