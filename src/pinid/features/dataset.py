"""A dataset's pins as model input: texts plus CNN image features, unreadable images left out."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from pinid.data import Dataset, PinidWarning
from pinid.data.pins import MIN_PINS_TO_SPLIT
from pinid.features import MAX_FAILURE_RATE
from pinid.features.extract import ImageFeatureExtractor, check_failure_rate
from pinid.features.pin_features import PinFeatures


@dataclass
class PreparedData:
    """A dataset whose pins all have readable images, with their features."""

    dataset: Dataset
    features: PinFeatures
    unreadable: dict[str, str] = field(default_factory=dict)

    def labels(self) -> np.ndarray:
        return np.array([p.user for p in self.dataset.pins])

    def rows(self, ids: set[str]) -> np.ndarray:
        """Positions of the pins whose ids are given, in the dataset's order."""
        return np.array([i for i, p in enumerate(self.dataset.pins) if p.pin_id in ids], dtype=int)

    def part(self, ids: set[str]) -> tuple[PinFeatures, np.ndarray]:
        rows = self.rows(ids)
        return self.features.take(rows), self.labels()[rows]


def prepare(
    dataset: Dataset,
    extractor: ImageFeatureExtractor,
    *,
    max_unreadable: float = MAX_FAILURE_RATE,
    strict: bool = False,
    minimum: int = MIN_PINS_TO_SPLIT,
) -> PreparedData:
    """Image features for every pin; pins with unreadable images are left out with a warning,
    and users with fewer than ``minimum`` pins too."""
    dataset = dataset.drop_small_users(minimum, strict=strict)
    result = extractor.extract([p.image for p in dataset.pins], what="pins")
    check_failure_rate(result.unreadable, [str(p.image) for p in dataset.pins], max_unreadable)
    unreadable = {dataset.pins[i].pin_id: reason for i, reason in result.unreadable.items()}
    if unreadable:
        warnings.warn(
            f"{dataset.source}: {len(unreadable)} pin(s) left out, image unreadable: "
            + "; ".join(f"{k}: {v}" for k, v in list(unreadable.items())[:5]),
            PinidWarning,
            stacklevel=2,
        )
    keep = np.flatnonzero(result.readable)
    kept = Dataset(tuple(dataset.pins[i] for i in keep), dataset.root, dataset.source)
    kept = kept.drop_small_users(minimum, strict=strict)
    users = set(kept.users)
    rows = np.array([i for i in keep if dataset.pins[i].user in users], dtype=int)
    features = PinFeatures([dataset.pins[i].text for i in rows], result.features[rows])
    return PreparedData(kept, features, unreadable)
