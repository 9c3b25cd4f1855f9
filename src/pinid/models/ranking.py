"""Top-k selection shared by refinement and evaluation."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` best scores, best first (ties: lower index first).

    ``argpartition`` first, so only k columns per row are sorted.
    """
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.tile(np.arange(k), (scores.shape[0], 1))
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=-1)
    return np.take_along_axis(candidates, order, axis=1)
