"""Combining the two modalities' per-user probabilities.

``cascade`` is the paper's fusion (eq. 1): the element-wise product. ``late`` is the baseline
of its reference [4]: a convex combination weighted by lambda.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _normalise(scores: np.ndarray) -> np.ndarray:
    total = scores.sum(axis=1, keepdims=True)
    return np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)


def cascade(*views: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """r = r_text * r_image (* any further view) per user, renormalised per pin; with
    ``weights``, each view raised to its weight first (weight 0: the view is left out)."""
    weights = weights or [1.0] * len(views)
    product = np.ones_like(views[0])
    for view, weight in zip(views, weights, strict=True):
        if weight == 1.0:
            product = product * view
        elif weight != 0.0:
            product = product * view**weight
    return _normalise(product)


def late(r_text: np.ndarray, r_image: np.ndarray, lam: float) -> np.ndarray:
    """lambda * r_image + (1 - lambda) * r_text."""
    return lam * r_image + (1.0 - lam) * r_text
