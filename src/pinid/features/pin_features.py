"""The models' input: row-aligned pin texts and image features (no torch import here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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

    def take(self, rows: np.ndarray, images: bool = True) -> PinFeatures:
        """The pins ``rows``; without ``images``, their image features are left out (zero
        columns), for a caller that already has what it needs of them."""
        rows = np.asarray(rows)
        return PinFeatures(
            [self.texts[i] for i in rows],
            self.images[rows] if images else np.zeros((len(rows), 0), self.images.dtype),
            self.has_text[rows],
            self.has_image[rows],
        )
