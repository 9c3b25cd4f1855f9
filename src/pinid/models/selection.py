"""Model selection: each view's regularisation C chosen by validation accuracy (the paper's
protocol), used by ``pinid train``, ``pinid experiment`` and the Python API alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from pinid.features.pin_features import PinFeatures
from pinid.models.modality import fit_model, make_char_model, make_image_model, make_text_model

C_GRID = (0.1, 1.0, 10.0, 100.0)
VIEW_MODELS = {"text": make_text_model, "char": make_char_model, "image": make_image_model}


def tune_C(
    train: tuple[PinFeatures, np.ndarray],
    val: tuple[PinFeatures, np.ndarray],
    views: tuple[str, ...] = tuple(VIEW_MODELS),
) -> tuple[dict[str, float], dict[str, dict[float, float]]]:
    """C per view by validation accuracy, each view on its own: the chosen Cs and every
    view's validation accuracy per C fitted."""
    (train_X, train_y), (val_X, val_y) = train, val
    chosen, scores = {}, {}
    for view in views:
        X_train, X_val = (
            (train_X.images, val_X.images)
            if view == "image"
            else (list(train_X.texts), list(val_X.texts))
        )
        chosen[view], scores[view] = select_C(
            VIEW_MODELS[view](), X_train, train_y, X_val, val_y, C_GRID
        )
    return chosen, scores


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
    validation accuracy rises with C up to a peak and then falls, so a larger C would not be
    chosen, and the largest C costs the most iterations.

    Each C is fitted from zero, not warm-started from the previous one: L-BFGS stops on a
    gradient tolerance that the C=10 solution already meets for C=100, so a warm path's
    models differ from cold fits and choose worse.
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
