"""The paper's two-phase identifier: per-modality models, cascade fusion, refinement.

:class:`PinIdentifier` follows scikit-learn's conventions (parameters in ``__init__``, learned
state ending in ``_``, ``fit`` returns ``self``, probability columns follow ``classes_``); its
input is :class:`PinFeatures` because a pin has two modalities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin

from pinid.features.dataset import PinFeatures
from pinid.models.fusion import cascade
from pinid.models.modality import fit_model, make_image_model, make_text_model
from pinid.models.refinement import TOP_K, Refined, SimilarityRefiner
from pinid.models.similarity import make_space


class PinIdentifier(ClassifierMixin, BaseEstimator):
    """Text and image logistic regressions, cascade fusion, top-k refinement by similarity."""

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

    def fit(self, X: PinFeatures, y: Sequence[str]) -> PinIdentifier:
        y = np.asarray(y)
        if not (X.has_image.all()):
            raise ValueError("training pins need an image; drop unreadable ones first")
        self.classes_ = np.unique(y)
        self.text_model_ = fit_model(make_text_model(self.C_text), list(X.texts), y)
        self.image_model_ = fit_model(make_image_model(self.C_image), X.images, y)
        for model in (self.text_model_, self.image_model_):
            assert np.array_equal(model.classes_, self.classes_)
        self.train_y_ = np.searchsorted(self.classes_, y)
        self.train_text_ = self.text_vectors(X.texts)
        self.train_image_ = self.image_vectors(X.images)
        self.refiners_: dict[str, SimilarityRefiner] = {}
        return self

    # --- representations -------------------------------------------------------------------
    def text_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """tf-idf rows (L2-normalised; all-zero when no dictionary word occurs)."""
        return sp.csr_matrix(self.text_model_.named_steps["tfidf"].transform(list(texts)))

    def image_vectors(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised CNN features, the space the image classifier sees."""
        return self.image_model_.named_steps["l2"].transform(images).astype(np.float32)

    # --- phase 1 and fusion ------------------------------------------------------------------
    def modality_proba(
        self, X: PinFeatures, text_vectors: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """r_text and r_image; a missing modality contributes ones (no information).

        ``text_vectors`` (of all of ``X``'s texts) saves tokenising them again."""
        n, m = len(X), len(self.classes_)
        r_text, r_image = np.ones((n, m)), np.ones((n, m))
        if X.has_text.any():
            rows = np.flatnonzero(X.has_text)
            vectors = (
                self.text_vectors([X.texts[i] for i in rows])
                if text_vectors is None
                else text_vectors[rows]
            )
            r_text[X.has_text] = self.text_model_.named_steps["logistic"].predict_proba(vectors)
        if X.has_image.any():
            r_image[X.has_image] = self.image_model_.predict_proba(X.images[X.has_image])
        return r_text, r_image

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
    ) -> Refined:
        """Re-rank each pin's top-k users of ``scores`` by their most similar training pin.

        In the joint space a pin given with one modality only is compared in that modality's
        space: against joint training vectors it would score at most 1/sqrt(2), and higher
        against training pins that happen to lack the other modality.
        """
        space = space or self.similarity
        if text_vectors is None:
            text_vectors = self.text_vectors(X.texts)
        texts = sp.diags(X.has_text.astype(np.float32)) @ text_vectors
        images = self.image_vectors(X.images) * X.has_image[:, None]
        per_pin = np.full(len(X), space, dtype=object)
        if space == "joint":
            per_pin[X.has_text & ~X.has_image] = "text"
            per_pin[X.has_image & ~X.has_text] = "image"
        parts = []
        for name in sorted(set(per_pin)):
            rows = np.flatnonzero(per_pin == name)
            query = make_space(name, texts[rows], images[rows])
            parts.append((rows, self.refiner(name).refine(scores[rows], query)))
        if len(parts) == 1:
            return parts[0][1]
        return Refined.gather(parts, len(X))

    def rank(self, X: PinFeatures) -> Refined:
        """The final ranking (cascade + refinement) with evidence, best first."""
        texts = self.text_vectors(X.texts)  # once, for both phases
        return self.refine(cascade(*self.modality_proba(X, texts)), X, text_vectors=texts)

    def predict(self, X: PinFeatures) -> np.ndarray:
        return self.classes_[self.rank(X).users[:, 0]]
