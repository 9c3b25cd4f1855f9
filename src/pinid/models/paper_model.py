"""The paper's two-phase identifier: per-modality models, cascade fusion, refinement.

:class:`PaperModel` follows scikit-learn's conventions (parameters in ``__init__``, learned
state ending in ``_``, ``fit`` returns ``self``, probability columns follow ``classes_``); its
input is :class:`PinFeatures` because a pin has two modalities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline

from pinid.features.pin_features import PinFeatures
from pinid.models.fusion import cascade, given_or_ones
from pinid.models.modality import fit_models, make_image_model, make_text_model
from pinid.models.refinement import TOP_K, Refined, SimilarityRefiner
from pinid.models.similarity import make_space


class PaperModel(ClassifierMixin, BaseEstimator):
    """Text and image logistic regressions, cascade fusion, top-k refinement by similarity
    (the paper's model, ``cf_ref``).

    Parameters
    ----------
    C_text, C_image : float
        Inverse regularisation of the word and image logistic regressions.
    similarity : {"joint", "text", "image"}
        The space in which refinement compares a pin with training pins.
    top_k : int
        How many of each pin's best fused users refinement re-weights.

    Attributes
    ----------
    classes_ : ndarray of str
        The users; probability columns follow this order.
    text_model_, image_model_ : Pipeline
        tf-idf or L2 normalisation, then the logistic regression.
    train_text_, train_image_ : sparse matrix, ndarray
        The training pins' word vectors and L2-normalised image features.
    train_y_ : ndarray of int
        The training pins' users, as indices into ``classes_``.
    refiners_ : dict of str to SimilarityRefiner
        One per similarity space, built on first use.
    """

    def __init__(
        self,
        C_text: float = 1.0,
        C_image: float = 1.0,
        similarity: str = "joint",
        top_k: int = TOP_K,
    ) -> None:
        self.C_text = C_text
        self.C_image = C_image
        self.similarity = similarity
        self.top_k = top_k

    def fit(self, X: PinFeatures, y: Sequence[str]) -> PaperModel:
        _require_images(X)
        y = np.asarray(y)
        models = fit_models({"image": (make_image_model(self.C_image), X.images),
                             "text": (make_text_model(self.C_text), list(X.texts))}, y)  # fmt: skip
        return self.with_models(models["text"], models["image"], X, y)

    def with_models(
        self, text_model: Pipeline, image_model: Pipeline, X: PinFeatures, y: Sequence[str],
        text_vectors: sp.csr_matrix | None = None, image_vectors: np.ndarray | None = None,
    ) -> PaperModel:  # fmt: skip
        """This model with its word and image models already fitted on ``X``, ``y`` (as
        :meth:`fit` fits them): the C search's fits, used again, with their steps' output for
        ``X`` where already computed."""
        _require_images(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.text_model_, self.image_model_ = text_model, image_model
        for model in (self.text_model_, self.image_model_):
            assert np.array_equal(model.classes_, self.classes_)
        self.train_y_ = np.searchsorted(self.classes_, y)
        for given in (text_vectors, image_vectors):
            if given is not None and given.shape[0] != len(X):
                raise ValueError(f"{given.shape[0]} vectors for {len(X)} pins")
        self.train_text_ = (self.text_vectors(X.texts) if text_vectors is None
                            else sp.csr_matrix(text_vectors))  # fmt: skip
        self.train_image_ = (self.image_vectors(X.images) if image_vectors is None
                             else np.asarray(image_vectors, np.float32))  # fmt: skip
        self.refiners_: dict[str, SimilarityRefiner] = {}
        return self

    # --- representations -------------------------------------------------------------------
    def text_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """tf-idf rows (L2-normalised; all-zero when no dictionary word occurs)."""
        return sp.csr_matrix(self.text_model_.named_steps["tfidf"].transform(list(texts)))

    def image_vectors(self, images: np.ndarray) -> np.ndarray:
        """CNN features as the image classifier sees them (style blocks standardised, then
        L2-normalised)."""
        return self.image_model_[:-1].transform(images).astype(np.float32, copy=False)

    # --- phase 1 and fusion ------------------------------------------------------------------
    def modality_proba(
        self,
        X: PinFeatures,
        text_vectors: sp.csr_matrix | None = None,
        image_vectors: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """r_text and r_image; a missing modality contributes ones (no information).

        ``text_vectors`` and ``image_vectors`` (of all of ``X``'s pins) save computing them
        again."""

        def text_proba() -> np.ndarray:
            vectors = (self.text_vectors(_present(X.texts, X.has_text)) if text_vectors is None
                       else _present(text_vectors, X.has_text))  # fmt: skip
            return self.text_model_.named_steps["logistic"].predict_proba(vectors)

        def image_proba() -> np.ndarray:
            vectors = (self.image_vectors(_present(X.images, X.has_image))
                       if image_vectors is None
                       else _present(image_vectors, X.has_image))  # fmt: skip
            return self.image_model_.named_steps["logistic"].predict_proba(vectors)

        m = len(self.classes_)
        return given_or_ones(text_proba, X.has_text, m), given_or_ones(image_proba, X.has_image, m)

    def predict_proba(self, X: PinFeatures) -> np.ndarray:
        """The cascade's per-user scores (phase 1), renormalised to sum to one per pin."""
        return cascade(*self.modality_proba(X))

    # --- phase 2 -----------------------------------------------------------------------------
    def refiner(self, space: str | None = None) -> SimilarityRefiner:
        space = space or self.similarity
        if space not in self.refiners_:
            blocks = make_space(space, self.train_text_, self.train_image_)
            self.refiners_[space] = SimilarityRefiner(self.top_k).fit(blocks, self.train_y_)
        return self.refiners_[space]

    def refine(
        self,
        scores: np.ndarray,
        X: PinFeatures,
        space: str | None = None,
        text_vectors: sp.csr_matrix | None = None,
        image_vectors: np.ndarray | None = None,
    ) -> Refined:
        """Re-rank each pin's top-k users of ``scores`` by their most similar training pin."""
        parts = [
            (rows, self.refiner(name).refine(scores[rows], query))
            for name, rows, query in self._queries(X, space, text_vectors, image_vectors)
        ]
        if len(parts) == 1:
            return parts[0][1]
        return Refined.gather(parts, len(X))

    def _queries(
        self,
        X: PinFeatures,
        space: str | None,
        text_vectors: sp.csr_matrix | None,
        image_vectors: np.ndarray | None,
    ) -> Iterator[tuple[str, np.ndarray, list]]:
        """(space, rows, query blocks) for each space the pins of ``X`` are compared in.

        In the joint space a pin given with one modality only is compared in that modality's
        space: against joint training vectors it would score at most 1/sqrt(2), and higher
        against training pins that happen to lack the other modality.
        """
        space = space or self.similarity
        texts = self.text_vectors(X.texts) if text_vectors is None else text_vectors
        images = self.image_vectors(X.images) if image_vectors is None else image_vectors
        if not X.has_text.all():
            texts = sp.diags(X.has_text.astype(np.float32)) @ texts
        if not X.has_image.all():
            images = images * X.has_image[:, None]
        per_pin = np.full(len(X), space, dtype=object)
        if space == "joint":
            per_pin[X.has_text & ~X.has_image] = "text"
            per_pin[X.has_image & ~X.has_text] = "image"
        for name in sorted(set(per_pin)):
            mine = per_pin == name
            query = make_space(name, _present(texts, mine), _present(images, mine))
            yield name, np.flatnonzero(mine), query

    def _fused(self, X: PinFeatures) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """A batch's text and image vectors, computed once for both phases, and its fused
        scores."""
        texts, images = self.text_vectors(X.texts), self.image_vectors(X.images)
        return texts, images, cascade(*self.modality_proba(X, texts, images))

    def rank(self, X: PinFeatures) -> Refined:
        """The final ranking (cascade + refinement) with evidence, best first."""
        texts, images, scores = self._fused(X)
        return self.refine(scores, X, text_vectors=texts, image_vectors=images)

    def predict(self, X: PinFeatures) -> np.ndarray:
        """``rank(X)``'s top users, without the similarities that cannot change them."""
        texts, images, scores = self._fused(X)
        answers = np.empty(len(X), np.int64)
        for name, rows, query in self._queries(X, None, texts, images):
            answers[rows] = self.refiner(name).best(scores[rows], query)
        return self.classes_[answers]


def _present(
    rows: Sequence | np.ndarray | sp.csr_matrix, present: np.ndarray
) -> Sequence | np.ndarray | sp.csr_matrix:
    """The rows where ``present``: all of them without a copy (a batch's image block is tens
    of megabytes, and fresh memory is what a first batch pays for most)."""
    if present.all():
        return rows
    where = np.flatnonzero(present)
    return [rows[i] for i in where] if isinstance(rows, Sequence) else rows[where]


def _require_images(X: PinFeatures) -> None:
    if not X.has_image.all():
        raise ValueError("training pins need an image; drop unreadable ones first")
