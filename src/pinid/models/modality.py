"""Phase 1 of the paper: one multinomial logistic regression per modality.

Each model is a plain scikit-learn :class:`~sklearn.pipeline.Pipeline`, so it composes and
reads as usual: text is tf-idf over the paper's cleaned words, image is L2-normalised CNN
features. ``C`` is chosen on the validation split by accuracy, then the model is refit on
train + validation (which, for text, rebuilds the dictionary on both, as the paper does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from pinid.errors import DataError
from pinid.features.text import make_char_vectorizer, make_text_vectorizer
from pinid.models.logistic import PreconditionedLogisticRegression

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_ITER = 1000
TOL = 1e-4  # scikit-learn's default


def _logistic(C: float) -> PreconditionedLogisticRegression:
    return PreconditionedLogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER)


def make_text_model(C: float = 1.0) -> Pipeline:
    """tf-idf (dictionary from the fitted pins, words in one pin dropped) -> logistic regression.

    The solver scales each word by its spread (:mod:`pinid.models.logistic`): at the paper's
    scale (benchmarks/paper_scale.py's corpus) it fitted C = 0.1, 1, 10, 100 in 1.6 / 2.2 / 3.6
    / 4.9 s where scikit-learn's sag took 2.6 / 3.4 / 6.5 / 30.5 s and its lbfgs 3.9 / 12.3 /
    38.3 / 55.3 s, validation accuracies within 0.1 point of sag's.
    """
    return Pipeline([("tfidf", make_text_vectorizer()), ("logistic", _logistic(C))])


def make_char_model(C: float = 1.0) -> Pipeline:
    """Beyond the paper: character n-gram tf-idf -> logistic regression (a second text view)."""
    return Pipeline([("tfidf", make_char_vectorizer()), ("logistic", _logistic(C))])


def make_image_model(C: float = 1.0) -> Pipeline:
    """L2-normalised CNN features -> logistic regression (whitened by its solver).

    Measured on openclipart (seed 0): standardising the features instead gave similar image
    accuracy but over-confident probabilities at the C validation picks, which dragged the
    cascade below text alone (78.3% vs 85.3% with L2).
    """
    return Pipeline([("l2", Normalizer()), ("logistic", _logistic(C))])


def fit_model(model: Pipeline, X, y: np.ndarray) -> Pipeline:
    """``model.fit``, with a text model that finds no dictionary explained in one line."""
    try:
        return model.fit(X, y)
    except ValueError as exc:
        if "vocabulary" in str(exc) or "no terms remain" in str(exc):
            raise DataError(
                "no word occurs in two or more training pins (or there is no text at all); "
                "the text model needs some shared words"
            ) from None
        raise


def select_C(
    model: Pipeline,
    X_train,
    y_train: np.ndarray,
    X_val,
    y_val: np.ndarray,
    grid: Sequence[float] = C_GRID,
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` with the best validation accuracy (ties: the smaller C), and the
    scores of the Cs fitted.

    The Cs are fitted from the smallest up, and the search stops once accuracy has risen above
    the smallest C's and a C then scores below the best so far (:func:`past_the_peak`):
    validation accuracy rises with C up to a peak and then falls (on every view of the demo
    and the paper-scale corpora), so a larger C would not be chosen, and the largest C costs
    the most iterations (with scikit-learn's sag the text view's C=100 at the paper's scale took
    34 s, after 12 s for the three others; with pinid's solver 4.9 s after 7.4 s).

    Each C is fitted from zero. A warm-started path (each C from the previous solution) took
    the text view's grid from 339 s to 53 s at the paper's scale but is not used: lbfgs stops
    on a gradient tolerance that the C=10 solution already meets for C=100, so the path's
    models differed from cold fits and chose worse (85.5 vs 88.2 % test accuracy at half the
    paper's scale, benchmarks/paper_scale.py).
    """
    scores: dict[float, float] = {}
    for C in sorted(grid):
        candidate = fit_model(clone(model).set_params(logistic__C=C), X_train, y_train)
        scores[C] = float(np.mean(candidate.predict(X_val) == y_val))
        if past_the_peak(list(scores.values())):
            break
    best = max(scores, key=lambda C: (scores[C], -C))
    return best, scores


def past_the_peak(scores: Sequence[float]) -> bool:
    """Whether validation accuracies, by increasing C, have risen and then fallen.

    A dip before any rise does not count: with many users and few pins each, the smallest Cs
    all underfit and their accuracies differ only by noise.
    """
    best = max(scores)
    return best > scores[0] and scores[-1] < best
