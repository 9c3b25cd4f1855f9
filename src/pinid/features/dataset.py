"""A dataset's pins as model input: texts plus CNN image features, unreadable images left out."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pinid.data import Dataset, PinidWarning
from pinid.features import MAX_FAILURE_RATE
from pinid.features.extract import ImageFeatureExtractor, check_failure_rate


@dataclass
class PinFeatures:
    """Row-aligned pins: raw texts and CNN image features.

    ``has_text``/``has_image`` say whether a modality was given at all (default: both); an
    empty text that was given still goes through the text model, as in the paper's protocol.
    """

    texts: Sequence[str]
    images: np.ndarray
    has_text: np.ndarray | None = None
    has_image: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.images.shape[0] != n:
            raise ValueError(f"{n} texts but {self.images.shape[0]} image rows")
        if self.has_text is None:
            self.has_text = np.ones(n, dtype=bool)
        if self.has_image is None:
            self.has_image = np.ones(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> PinFeatures:
        rows = np.asarray(rows)
        return PinFeatures(
            [self.texts[i] for i in rows],
            self.images[rows],
            self.has_text[rows],
            self.has_image[rows],
        )


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
) -> PreparedData:
    """Image features for every pin; pins with unreadable images are left out with a warning."""
    dataset = dataset.drop_small_users(strict=strict)
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
    kept = kept.drop_small_users(strict=strict)
    users = set(kept.users)
    rows = np.array([i for i in keep if dataset.pins[i].user in users], dtype=int)
    features = PinFeatures([dataset.pins[i].text for i in rows], result.features[rows])
    return PreparedData(kept, features, unreadable)
