"""Beyond the paper: what the re-ranker knows about each of a pin's candidate users.

The cascade's top-k users are the candidates (its recall@10 is far above its accuracy). For each
pin and candidate, the features are: the fused score and its position, every view's
probability and rank, how similar the pin is to the candidate's training pins in each space
(the best, the mean of the best three, the mean of all), and how many pins the candidate has.
"""

from __future__ import annotations

import numpy as np

from pinid.models.similarity import UserPins, take_rows

SIMILARITY_STATS = ("max", "top3", "mean")
_EPS = 1e-12


class UserSimilarity:
    """Training pins of one space, grouped by user, for per-user similarity statistics."""

    def __init__(self, train_blocks: list, train_y: np.ndarray, n_classes: int) -> None:
        self.users = UserPins(train_blocks, train_y, n_classes)

    def stats(self, query_blocks: list, candidates: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """(n, k, 3): max, top-3 mean and mean cosine of each pin to each candidate's pins."""
        n, k = candidates.shape
        out = np.zeros((n, k, len(SIMILARITY_STATS)), np.float32)
        for begin in range(0, n, chunk):
            rows = slice(begin, min(begin + chunk, n))
            nearest = self.users.nearest(take_rows(query_blocks, rows), candidates[rows], 3)
            out[rows, :, 0] = nearest.similarity[:, :, 0]
            out[rows, :, 1] = np.nanmean(nearest.similarity, axis=2)  # fewer than 3 pins: all
            out[rows, :, 2] = nearest.mean
        return out


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every user in every row (0 = highest score)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(scores.shape[1])[None, :], axis=1)
    return out


def candidate_features(
    fused: np.ndarray,
    candidates: np.ndarray,
    views: dict[str, np.ndarray],
    similarity: dict[str, np.ndarray],
    log_counts: np.ndarray,
    has_text: np.ndarray,
    has_image: np.ndarray,
) -> np.ndarray:
    """(n * k, d) features, rows pin-major: pin 0's k candidates, then pin 1's, ..."""
    n, k = candidates.shape
    rows = np.arange(n)[:, None]
    columns = [np.log(fused[rows, candidates] + _EPS), np.broadcast_to(np.arange(k), (n, k))]
    for probabilities in views.values():
        columns.append(np.log(probabilities[rows, candidates] + _EPS))
        columns.append(np.log1p(ranks(probabilities)[rows, candidates]))
    for stats in similarity.values():
        columns.extend(stats[:, :, j] for j in range(stats.shape[2]))
    columns.append(log_counts[candidates])
    columns.append(np.broadcast_to(has_text[:, None], (n, k)))
    columns.append(np.broadcast_to(has_image[:, None], (n, k)))
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=-1).reshape(n * k, -1)
