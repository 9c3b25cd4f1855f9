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
from pinid.models.fusion import cascade
from pinid.models.io import load_model


class Predictor:
    """A loaded model plus the image extractor it was trained with."""

    def __init__(self, model_dir: str | Path, *, progress: bool = False) -> None:
        self.model_dir = Path(model_dir)
        saved = load_model(self.model_dir)
        self.model, self.pins = saved.model, saved.pins
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
        """One answer per pin; a missing (``None``) or unusable modality is left out, and
        ``used`` says so; an unreadable image's reason is given as ``image_error``."""
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
        ``has_image`` is false are ignored). A text without any word of the model's dictionary
        is unusable: it would only restate the users' prior and make every similarity zero."""
        n = len(texts)
        given = np.array([t is not None for t in texts], dtype=bool)
        known = np.diff(self.model.text_vectors([t or "" for t in texts]).indptr) > 0
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
            r_text, r_image = self.model.modality_proba(X)
            refined = self.model.refine(cascade(r_text, r_image), X)
            for j, row in enumerate(usable):
                answers[row] = {
                    "ranking": self._ranking(refined, j, r_text, r_image, X, top),
                    "used": [
                        m for m, ok in (("text", has_text[row]), ("image", has_image[row])) if ok
                    ],
                }
        for row in range(n):
            if given[row] and not known[row]:
                answers[row]["text_note"] = "no word the model knows; text not used"
            answers[row]["model"] = str(self.model_dir)
        return answers

    def _ranking(self, refined, j: int, r_text, r_image, X: PinFeatures, top: int) -> list[dict]:
        entries = []
        for k in range(min(top, refined.users.shape[1])):
            user = int(refined.users[j, k])
            pin = int(refined.evidence[j, k])
            entries.append(
                {
                    "user": str(self.model.classes_[user]),
                    "score": float(refined.scores[j, k]),
                    "text_prob": float(r_text[j, user]) if X.has_text[j] else None,
                    "image_prob": float(r_image[j, user]) if X.has_image[j] else None,
                    "evidence": {
                        "pin_id": self.pins.pin_ids[pin],
                        "text": self.pins.texts[pin],
                        "image": self.pins.images[pin],
                        "similarity": float(refined.similarity[j, k]),
                    },
                }
            )
        return entries
