"""Combining the two modalities' per-user probabilities.

``cascade`` is the paper's fusion (eq. 1): the element-wise product. ``late`` is the baseline
of its reference [4]: a convex combination weighted by lambda.
"""

from __future__ import annotations

import numpy as np


def _normalise(scores: np.ndarray) -> np.ndarray:
    total = scores.sum(axis=1, keepdims=True)
    return np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)


def cascade(*views: np.ndarray) -> np.ndarray:
    """r = r_text * r_image (* any further view) per user, renormalised per pin."""
    product = views[0]
    for view in views[1:]:
        product = product * view
    return _normalise(product)


def late(r_text: np.ndarray, r_image: np.ndarray, lam: float) -> np.ndarray:
    """lambda * r_image + (1 - lambda) * r_text."""
    return lam * r_image + (1.0 - lam) * r_text
