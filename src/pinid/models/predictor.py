"""Answering "who posted this pin?" from a saved model: rankings with evidence.

``pinid predict`` and the web service both call :class:`Predictor`, so they give the same
ranking for the same pin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pinid.errors import ModelFileError
from pinid.features.dataset import PinFeatures
from pinid.features.efficientnet import FEATURE_DIM
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.io import load_model, rejection_threshold


class Predictor:
    """A loaded model plus the image extractor it was trained with."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        progress: bool = False,
        reject_below: float | str | None = None,
    ) -> None:
        """``reject_below``: answer "unknown" when the top probability is below it; ``"auto"``
        takes the threshold the experiment chose on validation (stored with the model)."""
        self.model_dir = Path(model_dir)
        saved = load_model(self.model_dir)
        self.model, self.pins = saved.model, saved.pins
        self.reject_below = rejection_threshold(saved, self.model_dir, reject_below)
        record = saved.extractor
        self.extractor = ImageFeatureExtractor(record["name"], fit=record["fit"], progress=progress)
        if self.extractor.extractor_id != record["id"]:
            raise ModelFileError(
                f"{self.model_dir}: trained with image extractor {record['id']}, "
                f"but this installation has {self.extractor.extractor_id}"
            )

    def identify(
        self, texts: Sequence[str | None], images: Sequence[Path | None], top: int = 10
    ) -> list[dict]:
        """One answer per pin: ``answer`` (a user, or "unknown" below the rejection threshold)
        and the ranked candidates with evidence. A missing (``None``) or unusable modality is
        left out, and ``used`` says so; an unreadable image's reason is in ``image_error``."""
        vectors = np.zeros((len(images), FEATURE_DIM), np.float32)
        has_image = np.zeros(len(images), bool)
        errors: dict[int, str] = {}
        rows = [i for i, path in enumerate(images) if path is not None]
        if rows:
            result = self.extractor.extract([images[i] for i in rows], what="query")
            for j, row in enumerate(rows):
                if result.readable[j]:
                    vectors[row], has_image[row] = result.features[j], True
                else:
                    errors[row] = result.unreadable[j]
        answers = self.rank(texts, vectors, has_image, top)
        for row, reason in errors.items():
            answers[row]["image_error"] = f"unreadable: {reason}"
        return answers

    def rank(
        self,
        texts: Sequence[str | None],
        image_vectors: np.ndarray,
        has_image: np.ndarray,
        top: int = 10,
    ) -> list[dict]:
        """Rankings for pins whose image features are already computed (rows where
        ``has_image`` is false are ignored). A text with neither a word nor a character n-gram
        the model knows is unusable: it would only restate the users' prior."""
        n = len(texts)
        given = np.array([bool(t and t.strip()) for t in texts], dtype=bool)  # "" = no text
        views, cleaned = self.model.views_, [t or "" for t in texts]
        known = (np.diff(views.base.text_vectors(cleaned).indptr) > 0) | (
            np.diff(views.char_vectors(cleaned).indptr) > 0
        )
        has_text = given & known
        has_image = np.asarray(has_image, dtype=bool)
        answers: list[dict] = [{"ranking": [], "used": []} for _ in range(n)]
        usable = np.flatnonzero(has_text | has_image)
        if usable.size:
            X = PinFeatures(
                [texts[i] or "" for i in usable],
                np.asarray(image_vectors, np.float32)[usable],
                has_text[usable],
                has_image[usable],
            )
            r_text, r_image = self.model.views_.base.modality_proba(X)
            ranked = self.model.rerank(X)
            for j, row in enumerate(usable):
                answers[row] = {
                    "ranking": self._ranking(ranked, j, r_text, r_image, X, top),
                    "used": [
                        m for m, ok in (("text", has_text[row]), ("image", has_image[row])) if ok
                    ],
                }
        for row in range(n):
            answer = answers[row]
            answer["answer"], answer["reject_below"] = None, self.reject_below  # nothing usable
            if answer["ranking"]:
                best = answer["ranking"][0]
                rejected = self.reject_below is not None and best["score"] < self.reject_below
                answer["answer"] = "unknown" if rejected else best["user"]
            if given[row] and not known[row]:
                answer["text_note"] = "nothing the model knows; text not used"
            answer["model"] = str(self.model_dir)
        return answers

    def _ranking(self, ranked, j: int, r_text, r_image, X: PinFeatures, top: int) -> list[dict]:
        entries = []
        for k in range(min(top, ranked.users.shape[1])):
            user = int(ranked.users[j, k])
            pin = int(ranked.evidence[j, k])
            entries.append(
                {
                    "user": str(self.model.classes_[user]),
                    "score": float(ranked.probability[j, k]),
                    "text_prob": float(r_text[j, user]) if X.has_text[j] else None,
                    "image_prob": float(r_image[j, user]) if X.has_image[j] else None,
                    "evidence": {
                        "pin_id": self.pins.pin_ids[pin],
                        "text": self.pins.texts[pin],
                        "image": self.pins.images[pin],
                        "similarity": float(ranked.similarity[j, k]),
                    },
                }
            )
        return entries
