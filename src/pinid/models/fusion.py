"""Combining the two modalities' per-user probabilities.

``cascade`` is the paper's fusion (eq. 1): the element-wise product. ``late`` is the baseline
of its reference [4]: a convex combination weighted by lambda.
"""

from __future__ import annotations

import numpy as np


def _normalise(scores: np.ndarray) -> np.ndarray:
    total = scores.sum(axis=1, keepdims=True)
    return np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)


def cascade(r_text: np.ndarray, r_image: np.ndarray) -> np.ndarray:
    """r = r_text * r_image per user, renormalised per pin (the argmax is unchanged)."""
    return _normalise(r_text * r_image)


def late(r_text: np.ndarray, r_image: np.ndarray, lam: float) -> np.ndarray:
    """lambda * r_image + (1 - lambda) * r_text."""
    return lam * r_image + (1.0 - lam) * r_text
