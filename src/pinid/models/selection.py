"""Model selection: each view's regularisation C chosen by validation accuracy (the paper's
protocol), used by ``pinid train``, ``pinid experiment`` and the Python API alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import closing

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from pinid.features.pin_features import PinFeatures
from pinid.models.fits import Fits, InProcess
from pinid.models.modality import fit_model, make_char_model, make_image_model, make_text_model

C_GRID = (0.1, 1.0, 10.0, 100.0)
VIEW_MODELS = {"text": make_text_model, "char": make_char_model, "image": make_image_model}


def tune_C(
    train: tuple[PinFeatures, np.ndarray],
    val: tuple[PinFeatures, np.ndarray],
    views: tuple[str, ...] = tuple(VIEW_MODELS),
    *,
    fits: Fits | None = None,
) -> tuple[dict[str, float], dict[str, dict[float, float]]]:
    """C per view by validation accuracy, each view on its own: the chosen Cs and every
    view's validation accuracy per C fitted.

    ``fits`` says where the fits run (default: this process, each C when the search reaches
    it). On a cluster every view's Cs are submitted at once; the search reads them in the same
    order and stops at the same C, so the choice is the in-process one."""
    fits = fits or InProcess()
    shared = [fits.share(part) for part in (*train, *val)]
    grid = sorted(C_GRID)
    accuracies = {view: fits.map(_accuracy, [(view, C) for C in grid], *shared) for view in views}
    chosen, scores = {}, {}
    for view, results in accuracies.items():
        with closing(results):  # on a cluster: the Cs the search did not reach are cancelled
            chosen[view], scores[view] = choose_C(zip(grid, results, strict=True))
    return chosen, scores


def _accuracy(
    view_C: tuple[str, float],
    train_X: PinFeatures,
    train_y: np.ndarray,
    val_X: PinFeatures,
    val_y: np.ndarray,
) -> float:
    """Validation accuracy of one view fitted with one C."""
    view, C = view_C
    if view == "image":
        X_train, X_val = train_X.images, val_X.images
    else:
        X_train, X_val = list(train_X.texts), list(val_X.texts)
    return _fit_and_score(VIEW_MODELS[view](), C, X_train, train_y, X_val, val_y)


def _fit_and_score(model: Pipeline, C: float, X_train, y_train, X_val, y_val) -> float:
    candidate = fit_model(clone(model).set_params(logistic__C=C), X_train, y_train)
    return float(np.mean(candidate.predict(X_val) == y_val))


def select_C(
    model: Pipeline,
    X_train,
    y_train: np.ndarray,
    X_val,
    y_val: np.ndarray,
    grid: Sequence[float] = C_GRID,
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` with the best validation accuracy (ties: the smaller C), and the
    scores of the Cs fitted (see :func:`choose_C`), fitted in this process."""
    grid = sorted(grid)
    scores = (_fit_and_score(model, C, X_train, y_train, X_val, y_val) for C in grid)
    return choose_C(zip(grid, scores, strict=True))


def choose_C(scores: Iterable[tuple[float, float]]) -> tuple[float, dict[float, float]]:
    """The best C of ``(C, validation accuracy)`` pairs by increasing C (ties: the smaller C),
    and the scores read.

    The pairs are read from the smallest C up, and reading stops once accuracy has risen above
    the smallest C's and a C then scores below the best so far (:func:`past_the_peak`):
    validation accuracy rises with C up to a peak and then falls, so a larger C would not be
    chosen, and the largest C costs the most iterations.

    Each C is fitted from zero, not warm-started from the previous one: L-BFGS stops on a
    gradient tolerance that the C=10 solution already meets for C=100, so a warm path's
    models differ from cold fits and choose worse.
    """
    read: dict[float, float] = {}
    for C, score in scores:
        read[C] = score
        if past_the_peak(list(read.values())):
            break
    best = max(read, key=lambda C: (read[C], -C))
    return best, read


def past_the_peak(scores: Sequence[float]) -> bool:
    """Whether validation accuracies, by increasing C, have risen and then fallen.

    A dip before any rise does not count: with many users and few pins each, the smallest Cs
    all underfit and their accuracies differ only by noise.
    """
    best = max(scores)
    return best > scores[0] and scores[-1] < best
