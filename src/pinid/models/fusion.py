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


def check_cascade_weights(weights: Sequence) -> tuple[float, float, float]:
    """``weights`` of the (text, char, image) cascade as floats, or ValueError: three numbers in
    [0, 1], the image's above 0 and a text view's above 0, so that a pin with one modality
    still gets that modality's ranking (a view it lacks contributes ones)."""
    if not (isinstance(weights, (list, tuple)) and len(weights) == 3
            and all(type(w) in (int, float) and 0 <= w <= 1 for w in weights)):  # fmt: skip
        raise ValueError(f"cascade weights must be three numbers in [0, 1], not {weights!r}")
    text, char, image = (float(w) for w in weights)
    if image == 0 or text == char == 0:
        raise ValueError(f"cascade weights {weights!r} leave a modality out")
    return text, char, image


def late(r_text: np.ndarray, r_image: np.ndarray, lam: float) -> np.ndarray:
    """lambda * r_image + (1 - lambda) * r_text."""
    return lam * r_image + (1.0 - lam) * r_text
