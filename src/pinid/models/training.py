"""Fitting the final identifier on chosen pins and describing it for the model folder."""

from __future__ import annotations

import numpy as np

from pinid.features.dataset import PreparedData
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.final_model import FinalModel, HeldOut
from pinid.models.fits import Fits
from pinid.models.io import TrainingPins
from pinid.models.selection import Tuned


def fit_identifier(
    data: PreparedData,
    pin_ids: set[str],
    C: dict[str, float | None],
    similarity: str = "joint",
    *,
    fits: Fits | None = None,
    tuned: tuple[Tuned, set[str], set[str]] | None = None,
) -> tuple[FinalModel, TrainingPins]:
    """Fit on the pins in ``pin_ids``; return the model and its training pins (for evidence).
    ``fits``: where the cross-fitting folds are fitted (default: this process). ``tuned``: the
    C search that chose ``C``, with its training and validation pins (among ``pin_ids``): the
    model takes its cascade's weights (else the plain product), and its fits at the chosen Cs
    serve as the fold when the validation pins are enough
    (:class:`pinid.models.final_model.HeldOut`); its models and vectors are handed over
    (emptied)."""
    rows = data.rows(pin_ids)
    X, y = data.features.take(rows), data.labels()[rows]
    held_out, weights = None, (1.0, 1.0, 1.0)
    if tuned is not None:
        search, *parts = tuned
        if search.C != C:
            raise ValueError(f"C {C} is not the C search's {search.C}")
        fitted_on, unseen = (data.rows(ids) for ids in parts)  # as data.part takes them
        searched = np.concatenate([fitted_on, unseen])
        if not np.isin(searched, rows).all() or len(np.unique(searched)) < len(searched):
            raise ValueError("the C search's training and validation pins must be apart and "
                             "among the pins fitted")  # fmt: skip
        # rows of X (the dataset's rows ``rows``, in order)
        held_out = HeldOut(search.models, np.searchsorted(rows, fitted_on),
                           np.searchsorted(rows, unseen), search.vectors)  # fmt: skip
        weights = search.cascade
    model = FinalModel(C_text=C["text"], C_char=C["char"], C_image=C["image"],
                       cascade_weights=weights, similarity=similarity)  # fmt: skip
    model.fit(X, y, fits=fits, held_out=held_out)
    return model, TrainingPins.of([data.dataset.pins[i] for i in rows])


def extractor_record(extractor: ImageFeatureExtractor) -> dict:
    """What a model needs to compute the same image features at prediction time."""
    return {"name": extractor.spec.name, "fit": extractor.fit, "id": extractor.extractor_id,
            "style": extractor.style, "engine": extractor.engine}  # fmt: skip
