"""Fitting the final identifier on chosen pins and describing it for the model folder."""

from __future__ import annotations

from pinid.features.dataset import PreparedData
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.final_model import FinalModel
from pinid.models.fits import Fits
from pinid.models.io import TrainingPins


def fit_identifier(
    data: PreparedData,
    pin_ids: set[str],
    C: dict[str, float],
    similarity: str = "joint",
    *,
    fits: Fits | None = None,
) -> tuple[FinalModel, TrainingPins]:
    """Fit on the pins in ``pin_ids``; return the model and its training pins (for evidence).
    ``fits``: where the cross-fitting folds are fitted (default: this process)."""
    X, y = data.part(pin_ids)
    pins = [data.dataset.pins[i] for i in data.rows(pin_ids)]
    model = FinalModel(
        C_text=C["text"], C_char=C["char"], C_image=C["image"], similarity=similarity
    ).fit(X, y, fits=fits)
    return model, TrainingPins.of(pins)


def extractor_record(extractor: ImageFeatureExtractor) -> dict:
    """What a model needs to compute the same image features at prediction time."""
    return {"name": extractor.spec.name, "fit": extractor.fit, "id": extractor.extractor_id,
            "style": extractor.style, "engine": extractor.engine}  # fmt: skip
