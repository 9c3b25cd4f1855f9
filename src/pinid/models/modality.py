"""Phase 1 of the paper: one multinomial logistic regression per modality.

Each model is a plain scikit-learn :class:`~sklearn.pipeline.Pipeline`, so it composes and
reads as usual: text is tf-idf over the paper's cleaned words, image is L2-normalised CNN
features. ``C`` is chosen on the validation split by accuracy, then the model is refit on
train + validation (which, for text, rebuilds the dictionary on both, as the paper does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from pinid.errors import DataError
from pinid.features.text import make_char_vectorizer, make_text_vectorizer
from pinid.models.logistic import WhitenedLogisticRegression, capped_tolerance

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_ITER = 1000
TOL = 1e-4  # scikit-learn's default

T = TypeVar("T")


def _logistic(C: float, solver: str = "lbfgs") -> LogisticRegression:
    # Both solvers fit the multinomial (softmax) model for multi-class targets; sag visits the
    # pins in a random order, fixed by random_state.
    return LogisticRegression(C=C, solver=solver, max_iter=MAX_ITER, tol=TOL, random_state=0)


def make_text_model(C: float = 1.0) -> Pipeline:
    """tf-idf (dictionary from the fitted pins, words in one pin dropped) -> logistic regression.

    Solved by sag, whose updates cost in proportion to a pin's words (a handful in short
    posts): at the paper's scale it fitted C = 0.1, 1, 10 in 12 s where lbfgs took 54 s, with
    validation accuracies within 0.12 point (benchmarks/paper_scale.py's corpus). The
    character view has hundreds of n-grams per pin; there lbfgs is the faster.
    """
    return Pipeline([("tfidf", make_text_vectorizer()), ("logistic", _logistic(C, "sag"))])


def make_char_model(C: float = 1.0) -> Pipeline:
    """Beyond the paper: character n-gram tf-idf -> logistic regression (a second text view)."""
    return Pipeline([("tfidf", make_char_vectorizer()), ("logistic", _logistic(C))])


def make_image_model(C: float = 1.0) -> Pipeline:
    """L2-normalised CNN features -> logistic regression (scikit-learn's model, solved in
    whitened coordinates by :class:`~pinid.models.logistic.WhitenedLogisticRegression`).

    Measured on openclipart (seed 0): standardising the features instead gave similar image
    accuracy but over-confident probabilities at the C validation picks, which dragged the
    cascade below text alone (78.3% vs 85.3% with L2).
    """
    logistic = WhitenedLogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER)
    return Pipeline([("l2", Normalizer()), ("logistic", logistic)])


def fit_model(model: Pipeline, X, y: np.ndarray) -> Pipeline:
    """``model.fit`` (features, then the logistic regression; scikit-learn's lbfgs gets
    :func:`~pinid.models.logistic.capped_tolerance`), with a text model that finds no
    dictionary explained in one line."""
    try:
        # the slice shares the model's steps, so this fits them
        features = model[:-1].fit_transform(X, y) if len(model) > 1 else X
    except ValueError as exc:
        if "vocabulary" in str(exc) or "no terms remain" in str(exc):
            raise DataError(
                "no word occurs in two or more training pins (or there is no text at all); "
                "the text model needs some shared words"
            ) from None
        raise
    logistic = model.named_steps["logistic"]
    if isinstance(logistic, LogisticRegression) and logistic.solver == "lbfgs":
        logistic.set_params(tol=capped_tolerance(TOL, features, y))
    logistic.fit(features, y)
    return model


def concurrently(*calls: Callable[[], T]) -> list[T]:
    """The calls' results, in order, each call run in its own thread.

    For the word and image views: their solvers release the GIL, the word view's sag keeps one
    core busy and the image view's products use BLAS on all, so side by side they fill the
    core that sag leaves idle (their C grids at the paper's scale: 35.4 s side by side, 42.1 s
    one after the other, benchmarks/paper_scale.py's corpus on 2 cores). On the demo's 2,059
    pins the two fit in the same time either way.
    """
    with ThreadPoolExecutor(max(1, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


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
    the most iterations (the text view's C=100 at the paper's scale: 34 s, after 12 s for the
    three others).

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
