"""Phase 1 of the paper: one multinomial logistic regression per modality.

Each model is a plain scikit-learn :class:`~sklearn.pipeline.Pipeline`, so it composes and
reads as usual: text is tf-idf over the paper's cleaned words, image is L2-normalised CNN
features. ``C`` is chosen on the validation split by accuracy, then the model is refit on
train + validation (which, for text, rebuilds the dictionary on both, as the paper does).
"""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from pinid.errors import DataError
from pinid.features.text import make_char_vectorizer, make_text_vectorizer
from pinid.models.logistic import PreconditionedLogisticRegression

MAX_ITER = 1000
TOL = 1e-4  # scikit-learn's default


def _logistic(C: float) -> PreconditionedLogisticRegression:
    return PreconditionedLogisticRegression(C=C, tol=TOL, max_iter=MAX_ITER)


def make_text_model(C: float = 1.0) -> Pipeline:
    """tf-idf (dictionary from the fitted pins, words in one pin dropped) -> logistic regression
    (its solver scales each word by its spread: :mod:`pinid.models.logistic`)."""
    return Pipeline([("tfidf", make_text_vectorizer()), ("logistic", _logistic(C))])


def make_char_model(C: float = 1.0) -> Pipeline:
    """Beyond the paper: character n-gram tf-idf -> logistic regression (a second text view)."""
    return Pipeline([("tfidf", make_char_vectorizer()), ("logistic", _logistic(C))])


def make_image_model(C: float = 1.0) -> Pipeline:
    """L2-normalised CNN features -> logistic regression (whitened by its solver).

    Not standardised: that gave similar image accuracy but over-confident probabilities at the
    validation's C, which dragged the cascade below text alone.
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
