"""Phase 1 of the paper: one multinomial logistic regression per modality.

Each model is a plain scikit-learn :class:`~sklearn.pipeline.Pipeline`, so it composes and
reads as usual: text is tf-idf over the paper's cleaned words, image is L2-normalised CNN
features. ``C`` is chosen on the validation split by accuracy, then the model is refit on
train + validation (which, for text, rebuilds the dictionary on both, as the paper does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, normalize

from pinid.errors import DataError
from pinid.features.specs import FEATURE_DIM
from pinid.features.text import make_char_vectorizer, make_text_vectorizer
from pinid.models.centroids import CentroidClassifier
from pinid.models.fits import fits_side_by_side
from pinid.models.logistic import PreconditionedLogisticRegression
from pinid.models.shortlist import ShortlistLogisticRegression

MAX_ITER = 1000
TOL = 1e-4  # scikit-learn's default
CENTROIDS_ABOVE = 20_000_000
"""Weights (n-grams x users) above which the character view's classifier is its users'
centroids (:func:`uses_centroids`)."""


def _logistic(C: float) -> PreconditionedLogisticRegression:
    return PreconditionedLogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER)


def make_text_model(C: float = 1.0) -> Pipeline:
    """tf-idf (dictionary from the fitted pins, words in one pin dropped) -> logistic regression
    (its solver scales each word by its spread: :mod:`pinid.models.logistic`)."""
    return Pipeline([("tfidf", make_text_vectorizer()), ("logistic", _logistic(C))])


def make_char_model(C: float | None = 1.0) -> Pipeline:
    """Beyond the paper: character n-gram tf-idf -> logistic regression (a second text view),
    or with ``C`` None a softmax over the users' centroids (:class:`CentroidClassifier`, the
    same kind of model, fitted without a solver: :func:`uses_centroids`)."""
    classifier = CentroidClassifier() if C is None else _logistic(C)
    return Pipeline([("tfidf", make_char_vectorizer()), ("logistic", classifier)])


def describe_C(C: float | None) -> str:
    """A view's C, or "centroids" for a view without one (:func:`uses_centroids`)."""
    return "centroids" if C is None else f"{C:g}"


def uses_centroids(view: str, n_features: int, n_users: int) -> bool:
    """Whether a view's classifier is its users' centroids rather than a logistic regression:
    the character view's, once it has over :data:`CENTROIDS_ABOVE` weights.

    L-BFGS holds over a dozen float32 copies of a regression's weights, and its products
    grow with them: at 2,000 users x 30 pins the character view (36,356 n-grams, 73 million
    weights) took 109 s a fit, against 2.7 s for its centroids, whose validation accuracy was
    6.19 % against 6.39 % (recall@10 12.2 against 13.3 %; 500 users: 9.64 against 9.56 %). The
    paper's word and image views stay regressions, as the paper has them (the image view's
    centroids lost 4.8 points at 2,000 users; the default model's image regression is fitted
    over shortlists there instead: :func:`make_image_model`)."""
    return view == "char" and n_features * n_users > CENTROIDS_ABOVE


class StyleBlocks(TransformerMixin, BaseEstimator):
    """Pooled CNN features and style statistics made comparable before they are joined: each
    block standardised (by the training pins' mean and deviation) and L2-normalised on its own,
    so that neither block's scale decides how much it counts. Features no wider than ``pooled``
    (no style statistics, as models of pinid 0.2 had them) pass through unchanged.

    Parameters
    ----------
    pooled : int
        Width of the pooled block, which comes first.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features,), or (0,) when there is no style block
    """

    def __init__(self, pooled: int = FEATURE_DIM) -> None:
        self.pooled = pooled

    def fit(self, X: np.ndarray, y=None) -> StyleBlocks:
        X = np.asarray(X, np.float32)
        self.n_features_in_ = X.shape[1]
        if X.shape[1] <= self.pooled:
            self.mean_ = self.scale_ = np.zeros(0, np.float32)
        else:
            self.mean_ = X.mean(axis=0)
            std = X.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32)
        if not len(self.mean_):
            return X
        Z = (X - self.mean_) / self.scale_
        return np.hstack([normalize(Z[:, : self.pooled]), normalize(Z[:, self.pooled :])])


def make_image_model(C: float = 1.0, shortlisted: bool = False) -> Pipeline:
    """CNN features (pooled and style blocks, :class:`StyleBlocks`), L2-normalised ->
    logistic regression (whitened by its solver); ``shortlisted``, the default model's: with
    many users, each training pin's softmax over a shortlist of users
    (:class:`~pinid.models.shortlist.ShortlistLogisticRegression`; the paper's full softmax
    up to :data:`~pinid.models.shortlist.SHORTLIST_ABOVE` users).

    The pooled features alone are not standardised: that gave similar image accuracy but
    over-confident probabilities at the validation's C, which dragged the cascade below text
    alone. With the style block both are, each on its own (measured: the image view alone and
    the default model both gained on seeds 0-2 of the default corpus).
    """
    classifier = (
        ShortlistLogisticRegression(C, tol=TOL, max_iter=MAX_ITER) if shortlisted else _logistic(C)
    )
    return Pipeline([("blocks", StyleBlocks()), ("l2", Normalizer()), ("logistic", classifier)])


def fit_model(model: Pipeline, X, y: np.ndarray) -> Pipeline:
    """``model.fit``, with a text model that finds no dictionary explained in one line."""
    with _no_dictionary_explained():
        return model.fit(X, y)


def fit_models(models: dict[str, tuple[Pipeline, Any]], y: np.ndarray) -> dict[str, Pipeline]:
    """Each ``name: (model, its inputs)`` fitted on ``y`` (as :func:`fit_model`), side by side
    in the order given (the longest first: :func:`pinid.models.fits.fits_side_by_side`)."""
    fitted = fits_side_by_side(lambda name: fit_model(*models[name], y), list(models))
    return dict(zip(models, fitted, strict=True))


def fit_features(steps: Pipeline, X, y: np.ndarray) -> np.ndarray | sp.csr_matrix:
    """``steps.fit_transform`` (a model's steps before its classifier), explained as
    :func:`fit_model`."""
    with _no_dictionary_explained():
        return steps.fit_transform(X, y)


@contextmanager
def _no_dictionary_explained() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:
        if "vocabulary" in str(exc) or "no terms remain" in str(exc):
            raise DataError(
                "no word occurs in two or more training pins (or there is no text at all); "
                "the text model needs some shared words"
            ) from None
        raise
