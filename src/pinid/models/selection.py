"""Model selection: each view's regularisation C chosen by validation accuracy (the paper's
protocol), used by ``pinid train``, ``pinid experiment`` and the Python API alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from pinid.features.pin_features import PinFeatures
from pinid.models.fits import Fits, InProcess
from pinid.models.fusion import cascade
from pinid.models.modality import (
    fit_features,
    fit_model,
    make_char_model,
    make_image_model,
    make_text_model,
    uses_centroids,
)
from pinid.models.refinement import TOP_K

C_GRID = (0.1, 1.0, 10.0, 100.0)
VIEW_MODELS = {"text": make_text_model, "char": make_char_model, "image": make_image_model}
CASCADE_GRID = tuple((t, c, 1.0) for t in (1.0, 0.5, 0.0) for c in (1.0, 0.5, 0.0) if t or c)
"""The cascade's weights (text, char, image) the C search compares; the plain product first
(see :func:`pinid.models.fusion.check_cascade_weights`)."""
CASCADE_Z = 3.0
"""How many standard deviations more pins another cascade must gain than lose to replace the
plain product (:func:`choose_cascade`)."""
CASCADE_CHUNK = 2_000_000
"""Probabilities per view that :func:`choose_cascade` holds at once (pins x users)."""


@dataclass
class Tuned:
    """The C search's outcome per view: the C chosen (None: the view's users' centroids,
    :func:`pinid.models.modality.uses_centroids`), the validation accuracy of each C read,
    the view's model at that C fitted on the training pins (its steps before the classifier
    included) and its steps' output for those pins, which the final model may use as its
    cross-fitting fold (:class:`pinid.models.final_model.HeldOut`)."""

    C: dict[str, float | None]
    scores: dict[str, dict[float | None, float]]
    models: dict[str, Pipeline]
    vectors: dict[str, Any]
    cascade: tuple[float, ...] = (1.0, 1.0, 1.0)
    """The weights of the views' cascade (see :func:`choose_cascade`); the plain product when
    not every view was searched."""
    cascade_scores: dict[tuple[float, ...], tuple[float, float]] = field(default_factory=dict)
    """Validation recall@k and accuracy of each cascade compared."""


def tune_C(
    train: tuple[PinFeatures, np.ndarray],
    val: tuple[PinFeatures, np.ndarray],
    views: tuple[str, ...] = tuple(VIEW_MODELS),
    *,
    fits: Fits | None = None,
    shortlisted: bool = True,
) -> Tuned:
    """C per view by validation accuracy, each view on its own; ``shortlisted``: the image
    view as the default model fits it (with many users, over shortlists:
    :func:`pinid.models.modality.make_image_model`), else as the paper's model does.

    A view's steps before its classifier (the tf-idf dictionary and weights, the image
    blocks' scaling) do not depend on C: they are fitted once on the training pins, and
    every C fits only the classifier on their output, as the whole model's fit would. A view
    whose classifier is its users' centroids (too many weights for a regression:
    :func:`pinid.models.modality.uses_centroids`) has nothing to search: its C is None.

    ``fits`` says where the fits run (default: this process, the views side by side, each
    view's C when its search reaches it). On a cluster every view's Cs are submitted at once;
    the search reads them in the same order and stops at the same C, so the choice is the
    in-process one.

    When every view is searched, the weights of their cascade are then chosen on the same
    validation pins (:func:`choose_cascade`)."""
    fits = fits or InProcess()

    def search(view: str) -> tuple[float | None, dict, Pipeline, Any, Any]:
        steps, *features = _view_features(view, train, val)
        users = len(np.unique(features[1]))
        # None: the view's users' centroids, which have no C
        grid = [None] if uses_centroids(view, features[0].shape[1], users) else sorted(C_GRID)
        shared = [fits.share(part) for part in features]
        best: dict = {}
        # on a cluster: the Cs the search did not reach are cancelled when it closes
        settings = [(view, C, shortlisted) for C in grid]
        with closing(fits.map(_accuracy, settings, *shared)) as results:
            C, scores = choose_C(_keeping_the_best(grid, results, best))
        assert best["C"] == C
        model = Pipeline([*steps.steps, *best["model"].steps])
        return C, scores, model, features[0], features[2]

    order = sorted(views, key=(_LONGEST_FIRST + tuple(VIEW_MODELS)).index)
    searched = dict(zip(order, fits.each(search, order), strict=True))  # the longest first
    tuned = Tuned({}, {}, {}, {})
    for view in views:
        C, scores, model, vectors, _ = searched[view]
        tuned.C[view], tuned.scores[view] = C, scores
        tuned.models[view], tuned.vectors[view] = model, vectors
    if set(views) == set(VIEW_MODELS):
        val_X, val_y = val
        given = {"text": val_X.has_text, "char": val_X.has_text, "image": val_X.has_image}
        cascade_views = ("text", "char", "image")  # the order of the weights
        tuned.cascade, tuned.cascade_scores = choose_cascade(
            [tuned.models[v][-1] for v in cascade_views], [searched[v][4] for v in cascade_views],
            [given[v] for v in cascade_views], val_y,
        )  # fmt: skip
    return tuned


_LONGEST_FIRST = ("image", "char", "text")
"""The views' C searches by their time at the paper's scale (21, 14 and 3.5 s), so that the
longest starts first when they run side by side."""


def _keeping_the_best(grid: Sequence[float | None], results: Iterable, best: dict) -> Iterator:
    """``(C, accuracy)`` of each fit read, in ``best`` the C and model of the best so far (the
    first of equals: the smallest C, as :func:`choose_C` chooses), and no other model."""
    for C, (accuracy, model) in zip(grid, results, strict=True):
        if not best or accuracy > best["accuracy"]:
            best.update(C=C, accuracy=accuracy, model=model)
        yield C, accuracy


def _view_features(
    view: str, train: tuple[PinFeatures, np.ndarray], val: tuple[PinFeatures, np.ndarray]
) -> tuple:
    """The view's steps before its classifier fitted on the training pins, and its features
    of the training and validation pins, with their labels."""
    (train_X, train_y), (val_X, val_y) = train, val
    steps = VIEW_MODELS[view]()[:-1]

    def inputs(X: PinFeatures):
        return X.images if view == "image" else list(X.texts)

    features = fit_features(steps, inputs(train_X), train_y)
    return steps, features, train_y, steps.transform(inputs(val_X)), val_y


def _accuracy(setting: tuple[str, float | None, bool], X_train, y_train: np.ndarray, X_val,
              y_val: np.ndarray) -> tuple[float, Pipeline]:  # fmt: skip
    """Validation accuracy of one view's classifier fitted with one C (and, for the image
    view, shortlisted or not) on the view's features, and that classifier."""
    view, C, shortlisted = setting
    model = make_image_model(C, shortlisted) if view == "image" else VIEW_MODELS[view](C)
    return _fit_and_score(model[-1:], X_train, y_train, X_val, y_val)


def _fit_and_score(model: Pipeline, X_train, y_train, X_val,
                   y_val) -> tuple[float, Pipeline]:  # fmt: skip
    candidate = fit_model(model, X_train, y_train)
    return float(np.mean(candidate.predict(X_val) == y_val)), candidate


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
    scores = (_fit_and_score(clone(model).set_params(logistic__C=C), X_train, y_train, X_val,
                             y_val)[0] for C in grid)  # fmt: skip
    return choose_C(zip(grid, scores, strict=True))


def choose_C(scores: Iterable[tuple[Any, float]]) -> tuple[Any, dict[Any, float]]:
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
    read: dict = {}
    for C, score in scores:
        read[C] = score
        if past_the_peak(list(read.values())):
            break
    best = max(read, key=read.__getitem__)  # the first of equals: the smaller C
    return best, read


def past_the_peak(scores: Sequence[float]) -> bool:
    """Whether validation accuracies, by increasing C, have risen and then fallen.

    A dip before any rise does not count: with many users and few pins each, the smallest Cs
    all underfit and their accuracies differ only by noise.
    """
    best = max(scores)
    return best > scores[0] and scores[-1] < best


def choose_cascade(
    classifiers: Sequence, features: Sequence, given: Sequence[np.ndarray], y: np.ndarray,
    k: int = TOP_K,
) -> tuple[tuple[float, ...], dict[tuple[float, ...], tuple[float, float]]]:  # fmt: skip
    """The weights of :data:`CASCADE_GRID` for the cascade of the views' probabilities
    (``classifiers``, one per view, fitted on the same users, on their ``features`` of pins
    by ``y``; a view whose modality a pin lacks (``given``) contributes ones, as in the
    model), and each weighting's (recall@k, accuracy) on those pins, the candidates ranked as
    the model ranks them (:func:`pinid.models.fusion.cascade`, ties by user index).

    The re-ranker sees only the cascade's top ``k``: an author the cascade leaves out is lost.
    With many users a weak but confident view (the characters' at 2,000 users) pushes authors
    out. The plain product is kept unless another weighting puts significantly more authors
    among the top ``k``: of the pins where the two differ, more gained than lost by over
    :data:`CASCADE_Z` standard deviations (a sign test); of those, the best recall@k (ties:
    the better accuracy, then the earlier in the grid). A gain of a pin or two on a small
    validation set is noise, and would change the model for nothing."""
    classes = classifiers[0].classes_
    chunk = max(1, CASCADE_CHUNK // len(classes))
    author = np.searchsorted(classes, y)
    known = (author < len(classes)) & (classes[np.minimum(author, len(classes) - 1)] == y)
    counts = np.zeros((len(CASCADE_GRID), 4))  # recall, accuracy, gained, lost (pins)
    for start in range(0, len(y), chunk):
        rows = np.arange(start, min(start + chunk, len(y)))[known[start : start + chunk]]
        views = []
        for view, X, has in zip(classifiers, features, given, strict=True):
            proba = np.ones((len(rows), len(classes)))
            present = has[rows]
            if present.any():
                proba[present] = view.predict_proba(X[rows[present]])
            views.append(proba)
        plain = None
        for g, weights in enumerate(CASCADE_GRID):
            fused = cascade(*views, weights=weights)
            own = fused[np.arange(len(rows)), author[rows]][:, None]
            users = np.arange(len(classes))
            above = ((fused > own) | ((fused == own) & (users < author[rows, None]))).sum(axis=1)
            hit = above < k
            plain = hit if plain is None else plain  # the grid's first: the plain product
            counts[g] += hit.sum(), (above == 0).sum(), (hit & ~plain).sum(), (plain & ~hit).sum()
    scores = {w: (float(r), float(a)) for w, (r, a) in zip(CASCADE_GRID, counts[:, :2] / len(y),
                                                               strict=True)}  # fmt: skip
    gained, lost = counts[:, 2], counts[:, 3]
    better = gained - lost > CASCADE_Z * np.sqrt(np.maximum(gained + lost, 1))
    significant = [w for w, b in zip(CASCADE_GRID, better, strict=True) if b]
    return max(significant, key=lambda w: scores[w], default=CASCADE_GRID[0]), scores
